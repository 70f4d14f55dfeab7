"""``GET /emulator/stats``: what this emulator's clients did, for tests and benchmarks.

Not an IBM endpoint. Everything counted here is this instance's own: other users' background
jobs (``Faults.background``) take their place in the device queues but never appear here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .records import QUEUED, RUNNING


def snapshot(state: Any) -> dict[str, Any]:
    """The counters of a ``state.ServiceState``; the caller holds its lock."""
    faults = state.faults
    counters = state.counters
    mine = [j for j in state.jobs.values() if not j.background]
    by_status = Counter(j.status for j in mine)
    return {
        "jobs_posted": counters["jobs_posted"],
        "jobs_posted_by_backend": dict(state.posts_by_backend),
        "max_pending": state.max_pending,
        "max_pending_by_backend": dict(state.max_pending_by_backend),
        "pending": by_status[QUEUED] + by_status[RUNNING],
        "posts_by_tag": dict(state.posts_by_tag),
        "tags_by_job": {j.id: list(j.tags) for j in mine},
        "retags": counters["retags"],
        "status_requests": sum(state.status_requests_by_job.values()),
        "status_requests_by_job": dict(state.status_requests_by_job),
        "cancelled": counters["cancelled"],
        "failed": counters["failed"],
        "failed_by_code": dict(state.failed_by_code),
        "completed": counters["completed"],
        "jobs_by_status": dict(by_status),
        "refused_pending_limit": counters["refused_pending_limit"],
        "throttled": counters["throttled"],
        "server_errors": counters["server_errors"],
        "requests": counters["requests"],
        "sessions_created": counters["sessions_created"],
        "sessions_closed": counters["sessions_closed"],
        "sessions_cancelled": counters["sessions_cancelled"],
        "sessions_expired": counters["sessions_expired"],
        "quantum_seconds_total": sum(state.consumed.values()),
        "quantum_seconds_by_instance": dict(state.consumed),
        "usage_limit": state.usage_limit,
        "device_states": {name: state.device_state.get(name) for name in sorted(state.device_state)},
        "job_seconds": faults.job_seconds,
        "pending_limit": faults.pending_limit,
        "batch_ttl": faults.batch_ttl,
        "fail_every": faults.fail_every,
        "fail_codes": list(faults.fail_codes),
        "throttle": faults.throttle,
        "server_errors_rate": faults.server_errors,
        "serial": faults.serial,
        "estimate_error": faults.estimate_error,
    }
