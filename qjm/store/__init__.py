"""qjm's Redis state: the key schema (``keys``), records (``records``), Lua scripts
(``scripts/*.lua``), the pending-job slot pool (``slots``), job durations (``durations``) and
latency histograms (``histograms``), behind one ``Store``."""

from .core import Store
from .records import JobRecord, JobSetRecord, Snapshot, new_job_set_id

__all__ = ["Store", "JobRecord", "JobSetRecord", "Snapshot", "new_job_set_id"]
