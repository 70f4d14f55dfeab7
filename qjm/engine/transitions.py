"""Job transitions as the pipeline makes them: the store's move plus the ``job_status``
hook event that observers (metrics) listen to. Every step moves jobs through here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..lifecycle import CANCELLED_BY_USER, JOB_CANCELLED_BY_USER, JobStatus
from ..store import Move, Store
from . import hooks

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Transitions:
    def __init__(self, store: Store, on_set_complete: Callable[[str], None] | None = None) -> None:
        """``on_set_complete(sid)`` is called by the one move that makes a set's last job final
        (the pipeline sends the set's assembly from there)."""
        self.store = store
        self.on_set_complete = on_set_complete

    def advance(self, sid: str, i: int, status: JobStatus, **kw: Any) -> JobStatus:
        """Move job ``i`` (see ``Store.move``); announce the move if this call made it.
        Returns the job's status afterwards."""
        return self._move(sid, i, status, **kw).status

    def _move(self, sid: str, i: int, status: JobStatus, **kw: Any) -> Move:
        move = self.store.move(sid, i, status, **kw)
        if move.moved:
            fields = {k: v for k, v in kw.items() if k not in ("result", "isa")}
            hooks.emit("job_status", job_set_id=sid, job=i, status=status, fields=fields)
        if move.set_complete and self.on_set_complete is not None:
            self.on_set_complete(sid)
        return move

    def announce(self, sid: str, i: int, status: JobStatus) -> None:
        """Announce a move the store made along with another change (``Steps.begin``)."""
        hooks.emit("job_status", job_set_id=sid, job=i, status=status, fields={})

    def new_attempt(self, sid: str, i: int, ended: int, why: str, kind: str = "repost",
                    start: JobStatus = JobStatus.TRANSPILED) -> int:
        """Start the job's next attempt (see ``Store.new_attempt``); announce it."""
        attempt = self.store.new_attempt(sid, i, ended, why, kind=kind, start=start)
        if attempt:
            log.info("job set %s job %d: attempt %d ended (%s); attempt %d begins (%s)", sid, i, ended, why, attempt,
                     kind)
            hooks.emit("job_status", job_set_id=sid, job=i, status=start, fields={"attempt": attempt})
        return attempt

    def cancel(self, sid: str, i: int) -> JobStatus:
        """Move job ``i`` to CANCELLED because its set was cancelled (whoever gets there first:
        ``Store.request_cancel`` or a worker that read the set's cancel flag)."""
        return self.advance(sid, i, JobStatus.CANCELLED, error=CANCELLED_BY_USER)

    def cancel_job(self, sid: str, i: int) -> bool:
        """Move job ``i`` alone to CANCELLED (``ManagedJob.cancel``): the rest of its set goes on.
        Returns whether this call cancelled it (False for a job already final)."""
        return self._move(sid, i, JobStatus.CANCELLED, error=JOB_CANCELLED_BY_USER).moved

    def fail(self, sid: str, i: int, what: str, exc: BaseException) -> None:
        """Record a failure of this job only; the rest of the set goes on."""
        log.warning("job set %s job %d: %s failed: %s", sid, i, what, exc, exc_info=exc)
        self.advance(sid, i, JobStatus.ERROR, error=f"{what} failed: {describe(exc)}")
