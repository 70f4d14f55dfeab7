"""Where a queued remote job stands on its device: qjm's estimate, since qiskit-ibm-runtime 0.51
gives no queue position.

When a job is posted, qjm notes how many jobs the device had ahead of it (``BackendInfo.ahead``,
from the listing). When a job ends, its time from post to end over that count plus one is a
sample of the device's pace (seconds per job); the pace is a running mean per device. A queued
job's position is then what was ahead of it less what the pace says has run since.
"""

from __future__ import annotations

from ..lifecycle import JobStatus
from ..store import JobRecord, Store
from .info import QueueInfo


def queue_info(store: Store, backend: str, job: JobRecord, ahead_at_post: int | None, now: float) -> QueueInfo | None:
    """None unless the job is posted and still waiting on the service (SUBMITTED)."""
    if job.status is not JobStatus.SUBMITTED or not job.remote_id or job.submitted_at is None:
        return None
    ahead = ahead_at_post or 0
    pace = store.durations.pace(backend)
    if pace is None or pace <= 0:
        return QueueInfo(job.remote_id, backend, ahead, None, None)
    ran = int((now - job.submitted_at) / pace)
    return QueueInfo(job.remote_id, backend, max(0, ahead - ran), job.submitted_at + ahead * pace, pace)


def pace_sample(seconds: float, ahead_at_post: int | None) -> float:
    """One finished job's seconds per job: its time from post to end over the jobs ahead of it and itself."""
    return seconds / ((ahead_at_post or 0) + 1)
