"""When jobs start and end: each device's queue, kept by one clock thread.

Two disciplines, both with the same rules for what may start:

* parallel (the default, as before): a job is Queued for ``job_seconds / 2`` after its post and
  then Running for ``job_seconds / 2``, however many others are queued, so a queue costs nothing;
* serial (``Faults.serial``): each device runs one job at a time, oldest post first,
  ``job_seconds`` each, as a real device does; a device's ``length_queue`` is then its true queue.

A job starts only while its device is online (``POST /emulator/backends/<name>``; jobs queued
on a device in maintenance stay queued and run when it is back, as on the service) and its
instance's usage limit is not reached (``usage``; other users' background jobs are not held by
this instance's limit). A job held that way keeps its place: in serial mode the device runs the
oldest job that may start. A Running job ends once its run time is over and the runner has its
outcome, so a slow simulation shows as a longer run, never as a missing result.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from .faults import Faults
from .records import OTHER_USERS, PENDING, QUEUED, RUNNING, Job, new_id, now_iso

#: Longest sleep of the clock when nothing is due (it is woken on every change anyway).
IDLE_WAIT = 1.0

ONLINE, MAINTENANCE = "online", "maintenance"
DEVICE_STATES = (ONLINE, MAINTENANCE)


class ClockHost(Protocol):
    """What the clock needs of the service state (``state.ServiceState``), which owns it."""

    jobs: dict[str, Job]
    lock: Any  # the state's RLock
    wakeup: threading.Condition
    faults: Faults
    device_state: dict[str, str]

    def expire_due(self) -> float | None: ...
    def start(self, job: Job) -> None: ...
    def finish(self, job: Job, reason: str | None, code: int | None, result: str | None) -> None: ...
    def usage_held(self, instance: str) -> bool: ...


def schedule(faults: Faults, now: float) -> tuple[float, float]:
    """(start_due, run_seconds) of a job posted at monotonic ``now``."""
    if faults.serial:
        return now, faults.job_seconds
    return now + faults.job_seconds / 2, faults.job_seconds / 2


def background_job(faults: Faults, backend: str, now: float) -> Job:
    """Another user's job on ``backend``: it runs and takes time like any job, and has no result."""
    start_due, run_seconds = schedule(faults, now)
    return Job(id=new_id(), seq=0, instance=OTHER_USERS, backend=backend, program_id="sampler", params={},
               session_id=None, tags=[], created=now_iso(), start_due=start_due, run_seconds=run_seconds,
               background=True, simulated=True, outcome=(None, None, None))


def queue_length(jobs: dict[str, Job], backend: str) -> int:
    """A device's ``length_queue``: its pending jobs (Queued or Running), everyone's, as the
    client's ``BackendStatus.pending_jobs`` ("the number of pending jobs on the backend") and the
    service's own meaning of pending (``GET /jobs?pending=true``: Queued and Running) say."""
    return sum(1 for j in jobs.values() if j.backend == backend and j.status in PENDING)


def may_start(host: ClockHost, job: Job) -> bool:
    if host.device_state.get(job.backend, ONLINE) != ONLINE:
        return False
    return job.background or not host.usage_held(job.instance)


def tick(host: ClockHost, now: float) -> float | None:
    """Make every transition that is due at ``now``; the seconds until the next one (None: none
    is timed, only a change, which wakes the clock, can start anything)."""
    nearest = host.expire_due()

    def soon(seconds: float) -> None:
        nonlocal nearest
        nearest = seconds if nearest is None else min(nearest, seconds)

    busy: set[str] = set()
    for job in list(host.jobs.values()):
        if job.status != RUNNING:
            continue
        assert job.end_at is not None
        if job.end_at <= now and job.outcome is not None:
            host.finish(job, *job.outcome)
            continue
        busy.add(job.backend)
        if job.end_at > now:
            soon(job.end_at - now)
    for job in list(host.jobs.values()):  # insertion order: oldest post first
        if job.status != QUEUED or (host.faults.serial and job.backend in busy) or not may_start(host, job):
            continue
        if job.start_due > now:
            soon(job.start_due - now)
            continue
        host.start(job)
        if job.status == RUNNING:
            job.started_at = now
            job.end_at = now + job.run_seconds
            soon(job.run_seconds)
            busy.add(job.backend)
    return nearest


class Clock:
    """The thread that calls ``tick`` whenever something is due or the state changed."""

    def __init__(self, host: ClockHost) -> None:
        self.host = host
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="qjm-emulator-clock", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        host = self.host
        with host.lock:
            while not self._stopping:
                nearest = tick(host, time.monotonic())
                host.wakeup.wait(timeout=IDLE_WAIT if nearest is None else min(IDLE_WAIT, max(nearest, 0.0)))

    def stop(self) -> None:
        with self.host.lock:
            self._stopping = True
            self.host.wakeup.notify_all()
        self._thread.join(timeout=5)
