"""qjm: IBM's Job Manager model on Celery workers and Redis.

``JobManager().run(circuits, backend=...)`` splits circuits into jobs, runs them on workers and
gives back one combined result, retrievable later from any process by the job set's id.
Importing qjm never imports or starts a worker.
"""

from .backends import BackendInfo, QueueInfo
from .client.job import ManagedJob
from .client.job_set import ManagedJobSet
from .client.manager import JobManager
from .client.results import ManagedResults
from .errors import (
    ExperimentNotFoundError,
    InvalidInputError,
    JobSetFailedError,
    JobSetNotFoundError,
    JobSetRunningError,
    JobSetTimeoutError,
    QJMError,
    ResultNotAvailableError,
    StoreUnavailableError,
    UnknownBackendError,
)
from .lifecycle import JobSetStatus, JobStatus
from .usage import InstanceUsage, SetUsage

__all__ = [
    "JobManager", "ManagedJobSet", "ManagedJob", "ManagedResults", "JobStatus", "JobSetStatus",
    "QJMError", "InvalidInputError", "UnknownBackendError", "StoreUnavailableError", "JobSetNotFoundError",
    "JobSetTimeoutError", "JobSetFailedError", "ExperimentNotFoundError", "JobSetRunningError",
    "ResultNotAvailableError", "BackendInfo", "QueueInfo", "SetUsage", "InstanceUsage",
]
__version__ = "0.1.0"
