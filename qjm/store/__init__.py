"""qjm's Redis state: the key schema (``keys``), records (``records``), Lua scripts
(``scripts/*.lua``), the pending-job slot pool (``slots``), job durations (``durations``),
latency histograms (``histograms``) and job outputs (``outputs``), behind one ``Store``."""

from .core import Move, Store
from .records import LIVENESS_FIELDS, OUTCOME_FIELDS, JobRecord, JobSetRecord, Snapshot, new_job_set_id

__all__ = ["Store", "Move", "LIVENESS_FIELDS", "OUTCOME_FIELDS", "JobRecord", "JobSetRecord", "Snapshot", "new_job_set_id"]
