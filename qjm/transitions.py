"""Job transitions as the pipeline makes them: the store's move plus the ``job_status``
hook event that observers (metrics) listen to. Every step moves jobs through here."""

from __future__ import annotations

import logging
from typing import Any

from . import hooks
from .lifecycle import JobStatus
from .store import Store

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Transitions:
    def __init__(self, store: Store) -> None:
        self.store = store

    def advance(self, sid: str, i: int, status: JobStatus, **kw: Any) -> JobStatus:
        """Move job ``i`` (see ``Store.advance``); announce the move if this call made it.
        Returns the job's status afterwards."""
        after, moved = self.store.advance(sid, i, status, **kw)
        if moved:
            fields = {k: v for k, v in kw.items() if k not in ("result", "isa")}
            hooks.emit("job_status", job_set_id=sid, job=i, status=status, fields=fields)
        return after

    def new_attempt(self, sid: str, i: int, ended: int, why: str, kind: str = "repost",
                    start: JobStatus = JobStatus.TRANSPILED) -> int:
        """Start the job's next attempt (see ``Store.new_attempt``); announce it."""
        attempt = self.store.new_attempt(sid, i, ended, why, kind=kind, start=start)
        if attempt:
            log.info("job set %s job %d: attempt %d ended (%s); attempt %d begins (%s)", sid, i, ended, why, attempt,
                     kind)
            hooks.emit("job_status", job_set_id=sid, job=i, status=start, fields={"attempt": attempt})
        return attempt

    def fail(self, sid: str, i: int, what: str, exc: BaseException) -> None:
        """Record a failure of this job only; the rest of the set goes on."""
        log.warning("job set %s job %d: %s failed: %s", sid, i, what, exc, exc_info=exc)
        self.advance(sid, i, JobStatus.ERROR, error=f"{what} failed: {describe(exc)}")
