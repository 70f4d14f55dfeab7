"""Quantum seconds consumed: what a job is charged once it ends, and what the client reads of it.

A job's charge (``charges``) is decided at post; what it finally costs follows IBM's rule for job
and batch mode ("Workload usage", failed and canceled jobs): usage is what was consumed on the
QPU up to the end, nothing when the QPU never ran the job or the failure was the system's:

* completed: its whole charge;
* cancelled before it started (Queued): 0; cancelled while running: the per-job overhead plus
  the rest of its charge in proportion to the part of its run time that had passed;
* failed: 0 for a system error (the injected failures, with or without a code: IBM's 1006/1008/
  1010/1011 are its own errors; 1002/1003 are validation and transpilation, found before the QPU
  is locked) and for a batch that expired before the job started; the per-job overhead for a
  program the emulator could not run (a user error found once the QPU was prepared).

Where the client reads it (qiskit-ibm-runtime 0.51): ``job.usage()`` is ``usage.qpu_charge_time_seconds``
of ``GET /jobs/{id}/metrics`` once ``usage.status`` is "final" (0 before); ``job.usage_estimation``
is ``{"quantum_seconds": estimated_running_time_seconds}`` of ``GET /jobs/{id}``; ``service.usage()``
is ``GET /instances/usage`` (``usage_consumed_seconds``, ``usage_limit_seconds`` and
``usage_allocation_seconds`` (the limit), ``usage_remaining_seconds``, ``usage_limit_reached``);
``batch.usage()`` is ``elapsed_time`` of ``GET /sessions/{id}``: the sum of its jobs' charges for a
batch, the wall-clock time it was active for a session (``dedicated`` mode), as IBM defines both.
"""

from __future__ import annotations

import datetime
from typing import Any

from .charges import JOB_OVERHEAD_SECONDS
from .records import CANCELLED, COMPLETED, FAILED, FINAL, RUNNING, Batch, Job


def final_charge(job: Job, status: str, was: str, now: float, program_failed: bool) -> float:
    """What a job ending now in ``status`` (from status ``was``) costs (the module's rule)."""
    if status == COMPLETED:
        return job.charge
    if status == CANCELLED and was == RUNNING and job.started_at is not None and job.run_seconds > 0:
        overhead = min(JOB_OVERHEAD_SECONDS, job.charge)
        done = min(1.0, max(0.0, (now - job.started_at) / job.run_seconds))
        return overhead + (job.charge - overhead) * done
    if status == FAILED and was == RUNNING and program_failed:
        return min(JOB_OVERHEAD_SECONDS, job.charge)
    return 0.0


def reached(used: float, limit: float | None) -> bool:
    """Whether an instance that consumed ``used`` seconds has reached its limit (queued jobs then wait)."""
    return limit is not None and used >= limit


def instance_usage(instance: str, used: float, limit: float | None) -> dict[str, Any]:
    """``GET /instances/usage`` in the service's field names."""
    return {
        "instance_id": instance, "plan_id": "emulator",
        "usage_consumed_seconds": used,
        "usage_limit_seconds": limit,
        "usage_allocation_seconds": limit,
        "usage_remaining_seconds": None if limit is None else max(limit - used, 0.0),
        "usage_limit_reached": reached(used, limit),
    }


def _time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def session_elapsed(batch: Batch, jobs: dict[str, Job]) -> float:
    """A batch's or session's ``elapsed_time`` (``batch.usage()``)."""
    if batch.mode != "dedicated":
        return sum(jobs[j].charged or 0.0 for j in batch.jobs if j in jobs)
    start = _time(batch.activated)
    if start is None:
        return 0.0
    end = _time(batch.closed) or datetime.datetime.now(datetime.timezone.utc)
    return max((end - start).total_seconds(), 0.0)


def metrics(job: Job) -> dict[str, Any]:
    """``GET /jobs/{id}/metrics``: its usage is 0 and "pending" until the job ends, then final."""
    final = job.status in FINAL
    seconds = job.charged if final and job.charged is not None else 0.0
    return {
        "timestamps": {"created": job.created, "running": job.running, "finished": job.finished},
        "bss": {"seconds": seconds},
        "usage": {"quantum_seconds": seconds, "seconds": seconds, "qpu_charge_time_seconds": seconds,
                  "status": "final" if final else "pending"},
        "qiskit_version": "emulated",
    }
