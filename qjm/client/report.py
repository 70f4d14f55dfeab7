"""Text reports in the shape of IBMQJobManager's: totals by status, then a block per job."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone

from ..lifecycle import PENDING, JobStatus
from ..store import JobRecord, JobSetRecord


def error_line(job: JobRecord) -> str:
    what = job.error or job.status.value.lower()
    return f"Experiments {job.start}-{job.stop - 1}, job index {job.index}, job ID {job.remote_id}: {what}"


def backends_line(rec: JobSetRecord, jobs: list[JobRecord]) -> str:
    """How many jobs each backend of the set took (and how many are not placed yet)."""
    placed = Counter(job.backend for job in jobs if job.backend)
    parts = [f"{b} {placed[b]}" for b in rec.candidates]
    unplaced = sum(1 for job in jobs if not job.backend)
    return ", ".join(parts + ([f"not placed {unplaced}"] if unplaced else []))


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def _which(jobs: list[JobRecord], status: JobStatus, most: int = 10) -> str:
    """`` (job index 1, 4)``: which jobs ended so, in the summary (the first ``most``)."""
    found = [str(job.index) for job in jobs if job.status is status]
    if not found:
        return ""
    return f" (job index {', '.join(found[:most])}{', ...' if len(found) > most else ''})"


def job_set_report(rec: JobSetRecord, jobs: list[JobRecord], detailed: bool = True) -> str:
    counts = Counter(job.status for job in jobs)
    pending = sum(counts[s] for s in PENDING)
    created = _when(rec.created)
    lines = [
        f"Job set name: {rec.name or ''}",
        f"          ID: {rec.id}",
        f"     backend: {', '.join(rec.candidates)}",
        f"        tags: {rec.tags}",
        f"     created: {created}",
        f"      status: {rec.status.value}",
        "Summary report:",
        f"       Total jobs: {len(jobs)}",
        f"  Successful jobs: {counts[JobStatus.DONE]}",
        f"      Failed jobs: {counts[JobStatus.ERROR]}{_which(jobs, JobStatus.ERROR)}",
        f"   Cancelled jobs: {counts[JobStatus.CANCELLED]}{_which(jobs, JobStatus.CANCELLED)}",
        f"     Running jobs: {counts[JobStatus.RUNNING]}",
        f"     Pending jobs: {pending}",
    ]
    if counts[JobStatus.HELD]:
        held = next((job.held for job in jobs if job.status is JobStatus.HELD and job.held), None)
        lines.append(f"        Held jobs: {counts[JobStatus.HELD]} (waiting for QPU time: {held or 'a budget'})")
    if rec.fans_out:
        lines.insert(3, f"     jobs per backend: {backends_line(rec, jobs)}")
    waiting = rec.waiting(time.time())
    if waiting:
        lines.append(f"          Waiting: {waiting}")
    if detailed:
        lines += ["", "Detail report:"]
        for job in jobs:
            lines += [
                f"  experiments: {job.start}-{job.stop - 1}",
                f"    job index: {job.index}",
                f"    job ID: {job.remote_id or '-'}",
                f"    status: {job.status.value}",
            ]
            if rec.fans_out:
                lines.append(f"    backend: {job.backend or '- (not placed yet)'}")
            if job.status is JobStatus.HELD and job.held:
                lines.append(f"    held by: {job.held}")
            if job.error and job.status in (JobStatus.ERROR, JobStatus.CANCELLED):
                lines.append(f"    error_message: {job.error}")
            if job.history:
                lines.append(f"    attempt: {job.attempt}")
                for past in job.history:
                    ended = _when(past.get("ended"))
                    lines.append(f"    attempt {past.get('attempt')} ended {ended} ({past.get('kind') or 'repost'} "
                                 f"followed), job ID {past.get('remote_id') or '-'}: {past.get('error') or '-'}")
    return "\n".join(lines)
