"""What qjm tells a user about a backend: one record per backend, local or remote."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BackendInfo:
    """A backend as qjm sees it at one moment (``JobManager.backends``).

    ``pending_jobs`` is the service's own queue on the device (every user's jobs, qjm's
    included; 0 for local backends); ``in_flight`` is qjm's jobs posted there and not final,
    across every set, worker and host; ``job_limit`` is qjm's pending-job limit for it."""

    name: str
    num_qubits: int
    simulator: bool
    local: bool
    operational: bool
    status_message: str
    pending_jobs: int
    in_flight: int
    job_limit: int | None

    @property
    def remaining_jobs_count(self) -> int | None:
        """How many more of qjm's jobs the backend takes now (the seed's ``remaining_jobs_count``)."""
        return None if self.job_limit is None else max(0, self.job_limit - self.in_flight)

    @property
    def ahead(self) -> int:
        """Jobs a newly posted job waits behind. The service's queue counts qjm's posted jobs
        too, but is read from a listing a few seconds old: qjm's own count is the fresher floor."""
        return max(self.pending_jobs, self.in_flight)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (what ``qjm backends --json`` prints)."""
        return {**asdict(self), "remaining_jobs_count": self.remaining_jobs_count}


@dataclass(frozen=True)
class QueueInfo:
    """Where a queued remote job stands (the seed's ``job.queue_info()``): qjm's estimate, since
    the service's client gives no queue position."""

    job_id: str
    backend: str
    position: int
    estimated_start_time: float | None
    #: Seconds per job the estimate assumes for the device.
    pace: float | None
