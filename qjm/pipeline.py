"""The steps a worker runs for one chunk of a job set, and the final assembly.

Each step is idempotent: it reads the chunk's state first and does nothing a previous
delivery already did, so a task redelivered after a worker crash leaves the same state.
A step never raises for a failure of the chunk itself: the failure is recorded on the chunk,
and the rest of the set goes on. It raises ``RetryLater`` when the step should run again.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

from qiskit.transpiler import PassManager, generate_preset_pass_manager

from . import codec, hooks, remote
from .remote import chunk_tags
from .config import Settings, settings as load_settings
from .executors import Executor, RunOptions, SubmitContext, for_backend
from .status import JobSetStatus, JobStatus
from .store import JobSetRecord, Store

log = logging.getLogger(__name__)


@lru_cache(maxsize=32)
def pass_manager(backend_name: str, optimization_level: int) -> PassManager:
    """Built once per worker process and backend: building it reads the whole target."""
    return generate_preset_pass_manager(optimization_level=optimization_level,
                                        backend=for_backend(backend_name).backend())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Pipeline:
    """The chunk steps, bound to one store. Workers keep one per process."""

    def __init__(self, store: Store | None = None, cfg: Settings | None = None) -> None:
        self.cfg = cfg or load_settings()
        self.store = store or Store(cfg=self.cfg)

    # ------------------------------------------------------------------ helpers
    def advance(self, sid: str, i: int, status: JobStatus, **kw: Any) -> JobStatus:
        after = self.store.advance(sid, i, status, **kw)
        if after is status:
            hooks.emit("chunk_status", job_set_id=sid, chunk=i, status=status, fields=kw)
        return after

    def fail(self, sid: str, i: int, what: str, exc: BaseException) -> None:
        log.warning("job set %s chunk %d: %s failed: %s", sid, i, what, exc, exc_info=exc)
        self.advance(sid, i, JobStatus.ERROR, error=f"{what} failed: {_describe(exc)}")

    def slot_lease(self) -> float:
        return 5.0 * self.cfg.max_poll_interval

    # ------------------------------------------------------------------ transpile
    def transpile_chunk(self, sid: str, i: int) -> None:
        ch = self.store.chunk(sid, i)
        if ch.status.final or self.store.has_isa(sid, i):
            return
        rec = self.store.job_set(sid)
        if rec.cancel_requested:
            self.advance(sid, i, JobStatus.CANCELLED)
            return
        self.advance(sid, i, JobStatus.TRANSPILING)
        try:
            circuits = codec.circuits_from_qpy(self.store.circuits_qpy(sid, i))
            opts = RunOptions.from_json(rec.options)
            # One chunk per task: parallelism comes from many workers, not from forking here.
            isa = pass_manager(rec.backend, opts.optimization_level).run(circuits, num_processes=1)
            isa = [isa] if not isinstance(isa, list) else isa
            self.store.store_isa(sid, i, codec.circuits_to_qpy(isa))
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this chunk only
            self.fail(sid, i, "transpilation", exc)

    # ------------------------------------------------------------------ submit
    def submit_chunk(self, sid: str, i: int) -> None:
        """Run (local) or post (remote) the chunk's job. Raises RetryLater when throttled."""
        ch = self.store.chunk(sid, i)
        if ch.status.final or ch.remote_id:
            return
        rec = self.store.job_set(sid)
        if rec.cancel_requested:
            self.advance(sid, i, JobStatus.CANCELLED)
            return
        try:
            executor = for_backend(rec.backend)
        except Exception as exc:  # noqa: BLE001
            self.fail(sid, i, "submission", exc)
            return
        if not executor.local:
            remote.submit(self, rec, i, executor, lambda: self._load_isa(rec, i))
            return
        work = self._load_isa(rec, i)
        if work is not None:
            self._run_local(sid, i, executor, *work)

    def _load_isa(self, rec: JobSetRecord, i: int) -> tuple[list, RunOptions] | None:
        """The chunk's transpiled circuits and the set's options; None (chunk failed) if unusable."""
        blob = self.store.isa_qpy(rec.id, i)
        if blob is None:
            self.advance(rec.id, i, JobStatus.ERROR, error="no transpiled circuits were stored for this job")
            return None
        try:
            return codec.circuits_from_qpy(blob), RunOptions.from_json(rec.options)
        except Exception as exc:  # noqa: BLE001
            self.fail(rec.id, i, "submission", exc)
            return None

    def _run_local(self, sid: str, i: int, executor: Executor, isa: list, opts: RunOptions) -> None:
        self.advance(sid, i, JobStatus.RUNNING)
        try:
            sub = executor.submit(isa, opts, SubmitContext(sid, i, tags=chunk_tags(sid, i)))
        except Exception as exc:  # noqa: BLE001
            self.fail(sid, i, "simulation", exc)
            return
        # The result is stored with the DONE status in one step; polling then finds it done.
        self.advance(sid, i, JobStatus.DONE, result=sub.records, remote_id=sub.remote_id,
                      finished_at=repr(time.time()))

    # ------------------------------------------------------------------ poll
    def poll_chunk(self, sid: str, i: int) -> float | None:
        """Check the chunk's job once. Returns seconds until the next check, None when final."""
        ch = self.store.chunk(sid, i)
        rec = self.store.job_set(sid)
        executor = for_backend(rec.backend)
        if ch.status.final:
            if not executor.local:
                remote.after_final(self, rec, i)  # e.g. cancelled by the user: free its slot
            return None
        if executor.local:
            # Local chunks finish inside submit; reaching here means submit recorded no outcome.
            self.advance(sid, i, JobStatus.ERROR, error="local job ended without a result")
            return None
        return remote.poll(self, rec, i, ch, executor)

    # ------------------------------------------------------------------ assemble
    def assemble(self, sid: str) -> JobSetStatus:
        """Combine every chunk's records in global order and record the set's final state."""
        rec = self.store.job_set(sid)
        if rec.status.final and self.store.combined_result(sid) is not None:
            return rec.status
        chunks = self.store.chunks(sid, rec.n_chunks)
        names = self.store.names(sid)
        # A chunk still unfinished here was orphaned (its chain ended abnormally): say so.
        orphans = [ch for ch in chunks if not ch.status.final]
        for ch in orphans:
            self.advance(sid, ch.index, JobStatus.ERROR, error=f"job ended in state {ch.status.value}")
        if orphans:
            chunks = self.store.chunks(sid, rec.n_chunks)
        results: list[dict[str, Any]] = []
        for ch in chunks:
            records = self.store.chunk_result(sid, ch.index) if ch.status is JobStatus.DONE else None
            if records is None or len(records) != ch.stop - ch.start:
                why = ch.error or f"job {ch.index} {ch.status.value.lower()}"
                records = [codec.failed_record(names[k] if k < len(names) else str(k), why)
                           for k in range(ch.start, ch.stop)]
            results.extend(records)
        statuses = {ch.status for ch in chunks}
        if rec.cancel_requested or JobStatus.CANCELLED in statuses:
            final = JobSetStatus.CANCELLED if rec.cancel_requested else JobSetStatus.ERROR
        elif statuses == {JobStatus.DONE}:
            final = JobSetStatus.DONE
        else:
            final = JobSetStatus.ERROR
        combined = {
            "backend_name": rec.backend,
            "backend_version": "",
            "qobj_id": sid,
            "job_id": sid,
            "success": final is JobSetStatus.DONE,
            "results": results,
        }
        if rec.session_id:  # before the set reads as final, so nothing is left open behind it
            remote.close_session(self, rec)
        self.store.finish(sid, final, combined, rec.n_chunks)
        hooks.emit("job_set_final", job_set_id=sid, status=final, record=rec)
        return final

    # ------------------------------------------------------------------ cancel
    def cancel_remote(self, sid: str) -> None:
        """Cancel the set's remote jobs and batch (runs in a worker, which has credentials)."""
        rec = self.store.job_set(sid)
        executor = for_backend(rec.backend)
        if executor.local:
            return
        remote.cancel_set(self, rec, executor)

