"""The one thread that runs queued jobs, and the timers that publish their progress.

A job is simulated as soon as it is posted (oldest first), inside its ``job_seconds``, so that
the emulator's own compute time does not add to what a client measures. Seen from outside, a
job is Queued for the first half of its time and Running for the second; its result is published
when the time is up, however early it was computed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .devices import DeviceCatalog
from .faults import Faults
from .programs import ProgramError, run_program
from .records import QUEUED, Job
from .simulation import ChildSimulator


class RunnerHost(Protocol):
    """What the runner needs of the service state (``state.ServiceState``), which owns it."""

    jobs: dict[str, Job]
    lock: Any  # the state's RLock
    wakeup: threading.Condition
    faults: Faults
    catalog: DeviceCatalog

    def expire_due(self) -> float | None: ...
    def start(self, job: Job) -> None: ...
    def finish(self, job: Job, reason: str | None, code: int | None, result: str | None) -> None: ...

#: Longest sleep of the runner when nothing is due (it is woken on every post anyway).
IDLE_WAIT = 1.0


class Runner:
    """Simulates the state's queued jobs one at a time; also ends expired batches on time."""

    def __init__(self, state: RunnerHost, child: ChildSimulator | None = None) -> None:
        """``child``: run programs in that process (``simulation``) rather than in this thread."""
        self.state = state
        self.child = child
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="qjm-emulator-runner", daemon=True)
        self._thread.start()

    def _next(self) -> Job | None:
        for job in self.state.jobs.values():
            if job.status == QUEUED and not job.simulated:
                return job
        return None

    def _loop(self) -> None:
        state = self.state
        while True:
            with state.lock:
                while True:
                    if self._stopping:
                        return
                    next_deadline = state.expire_due()
                    job = self._next()
                    if job is not None:
                        break
                    state.wakeup.wait(timeout=min(IDLE_WAIT, next_deadline) if next_deadline is not None else IDLE_WAIT)
                job.simulated = True
            self._execute(job)

    def _execute(self, job: Job) -> None:
        state = self.state
        job_seconds = state.faults.job_seconds
        reason: str | None = None
        code: int | None = None
        result: str | None = None
        if job.fail is not None:
            time.sleep(min(0.05, job_seconds))
            reason, code = job.fail
        else:
            try:
                if self.child is not None:
                    result = self.child.run(job.backend, job.program_id, job.params, job.received)
                else:
                    result = run_program(state.catalog.simulator(job.backend), job.program_id, job.params, job.received)
            except ProgramError as exc:
                reason = str(exc)
            except Exception as exc:  # a bad circuit must fail its job, not the emulator
                reason = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        self._at(job.ready_at - job_seconds / 2, now, state.start, job)
        self._at(job.ready_at, now, state.finish, job, reason, code, result)

    @staticmethod
    def _at(when: float, now: float, step: Callable[..., None], *args: Any) -> None:
        """Run ``step(*args)`` at monotonic time ``when`` (now if that has passed)."""
        if when > now:
            timer = threading.Timer(when - now, step, args)
            timer.daemon = True
            timer.start()
        else:
            step(*args)

    def stop(self) -> None:
        with self.state.lock:
            self._stopping = True
            self.state.wakeup.notify_all()
        self._thread.join(timeout=5)
        if self.child is not None:
            self.child.stop()
