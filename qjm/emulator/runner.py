"""The one thread that computes what posted jobs produce.

A job is simulated as soon as it is posted (oldest first), whatever its place in its device's
queue, so that the emulator's own compute time does not add to what a client measures. When a
job starts and ends is the clock's business (``queues``): the outcome computed here is only
published when the job's run time is up, however early it was computed.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .devices import DeviceCatalog
from .faults import Faults
from .programs import ProgramError, run_program
from .records import PENDING, Job
from .simulation import ChildSimulator


class RunnerHost(Protocol):
    """What the runner needs of the service state (``state.ServiceState``), which owns it."""

    jobs: dict[str, Job]
    lock: Any  # the state's RLock
    wakeup: threading.Condition
    faults: Faults
    catalog: DeviceCatalog


#: Longest sleep of the runner when nothing is due (it is woken on every post anyway).
IDLE_WAIT = 1.0


class Runner:
    """Simulates the state's pending jobs one at a time, oldest first."""

    def __init__(self, state: RunnerHost, child: ChildSimulator | None = None) -> None:
        """``child``: run programs in that process (``simulation``) rather than in this thread."""
        self.state = state
        self.child = child
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="qjm-emulator-runner", daemon=True)
        self._thread.start()

    def _next(self) -> Job | None:
        for job in self.state.jobs.values():
            if job.status in PENDING and not job.simulated:
                return job
        return None

    def _loop(self) -> None:
        state = self.state
        while True:
            with state.lock:
                while True:
                    if self._stopping:
                        return
                    job = self._next()
                    if job is not None:
                        break
                    state.wakeup.wait(timeout=IDLE_WAIT)
                job.simulated = True
            outcome = self._execute(job)
            with state.lock:
                job.outcome = outcome
                state.wakeup.notify_all()

    def _execute(self, job: Job) -> tuple[str | None, int | None, str | None]:
        """(failure reason, reason code, result text) of a job: one of reason or result is set."""
        state = self.state
        reason: str | None = None
        code: int | None = None
        result: str | None = None
        if job.fail is not None:
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
        return reason, code, result

    def stop(self) -> None:
        with self.state.lock:
            self._stopping = True
            self.state.wakeup.notify_all()
        self._thread.join(timeout=5)
        if self.child is not None:
            self.child.stop()
