"""Text reports in the shape of IBMQJobManager's: totals by status, then a block per job."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from .lifecycle import PENDING, JobStatus
from .store import JobRecord, JobSetRecord


def error_line(job: JobRecord) -> str:
    what = job.error or job.status.value.lower()
    return f"Experiments {job.start}-{job.stop - 1}, job index {job.index}, job ID {job.remote_id}: {what}"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def job_set_report(rec: JobSetRecord, jobs: list[JobRecord], detailed: bool = True) -> str:
    counts = Counter(job.status for job in jobs)
    pending = sum(counts[s] for s in PENDING)
    created = _when(rec.created)
    lines = [
        f"Job set name: {rec.name or ''}",
        f"          ID: {rec.id}",
        f"     backend: {rec.backend}",
        f"        tags: {rec.tags}",
        f"     created: {created}",
        f"      status: {rec.status.value}",
        "Summary report:",
        f"       Total jobs: {len(jobs)}",
        f"  Successful jobs: {counts[JobStatus.DONE]}",
        f"      Failed jobs: {counts[JobStatus.ERROR]}",
        f"   Cancelled jobs: {counts[JobStatus.CANCELLED]}",
        f"     Running jobs: {counts[JobStatus.RUNNING]}",
        f"     Pending jobs: {pending}",
    ]
    if detailed:
        lines += ["", "Detail report:"]
        for job in jobs:
            lines += [
                f"  experiments: {job.start}-{job.stop - 1}",
                f"    job index: {job.index}",
                f"    job ID: {job.remote_id or '-'}",
                f"    status: {job.status.value}",
            ]
            if job.error and job.status in (JobStatus.ERROR, JobStatus.CANCELLED):
                lines.append(f"    error_message: {job.error}")
            if job.history:
                lines.append(f"    attempt: {job.attempt}")
                for past in job.history:
                    ended = _when(past.get("ended"))
                    lines.append(f"    attempt {past.get('attempt')} ended {ended} ({past.get('kind') or 'repost'} "
                                 f"followed), job ID {past.get('remote_id') or '-'}: {past.get('error') or '-'}")
    return "\n".join(lines)
