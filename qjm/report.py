"""Text reports in the shape of IBMQJobManager's: totals by status, then a block per job."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from .status import JobStatus
from .store import ChunkRecord, JobSetRecord


def error_line(ch: ChunkRecord) -> str:
    what = ch.error or ch.status.value.lower()
    return f"Experiments {ch.start}-{ch.stop - 1}, job index {ch.index}, job ID {ch.remote_id}: {what}"


def job_set_report(rec: JobSetRecord, chunks: list[ChunkRecord], detailed: bool = True) -> str:
    counts = Counter(ch.status for ch in chunks)
    pending = sum(counts[s] for s in (JobStatus.QUEUED, JobStatus.TRANSPILING, JobStatus.SUBMITTED))
    created = datetime.fromtimestamp(rec.created, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"Job set name: {rec.name or ''}",
        f"          ID: {rec.id}",
        f"     backend: {rec.backend}",
        f"        tags: {rec.tags}",
        f"     created: {created}",
        f"      status: {rec.status.value}",
        "Summary report:",
        f"       Total jobs: {len(chunks)}",
        f"  Successful jobs: {counts[JobStatus.DONE]}",
        f"      Failed jobs: {counts[JobStatus.ERROR]}",
        f"   Cancelled jobs: {counts[JobStatus.CANCELLED]}",
        f"     Running jobs: {counts[JobStatus.RUNNING]}",
        f"     Pending jobs: {pending}",
    ]
    if detailed:
        lines += ["", "Detail report:"]
        for ch in chunks:
            lines += [
                f"  experiments: {ch.start}-{ch.stop - 1}",
                f"    job index: {ch.index}",
                f"    job ID: {ch.remote_id or '-'}",
                f"    status: {ch.status.value}",
            ]
            if ch.error and ch.status in (JobStatus.ERROR, JobStatus.CANCELLED):
                lines.append(f"    error_message: {ch.error}")
    return "\n".join(lines)
