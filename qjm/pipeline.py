"""The steps a worker runs for one job of a set, and the final assembly.

Each step is idempotent: it reads the job's state first and does nothing a previous delivery
already did, so a task redelivered after a worker crash leaves the same state. A step never
raises for a failure of the job itself: the failure is recorded on the job, and the rest of the
set goes on. It raises ``RetryLater`` when the step should run again.

Transpilation is the same for every backend; after it the pipeline only chooses a runner
(``qjm.runners``): local jobs are simulated in the worker, remote ones posted and polled.
"""

from __future__ import annotations

import time
from typing import Any

from qiskit.transpiler import PassManager, generate_preset_pass_manager

from . import codec, hooks, polling, tasks
from .config import Settings
from .config import settings as load_settings
from .errors import RetryLater
from .executors import RunOptions, for_backend
from .lifecycle import JobSetStatus, JobStatus, Step, job_set_outcome
from .runners import JobRunner, LocalRunner, RemoteRunner
from .runners.base import ExecutorFor
from .store import JobSetRecord, Store
from .transitions import Transitions


class Pipeline:
    """The job steps, bound to one store. Workers keep one per process.

    ``executor_for`` maps a backend name to its executor (``qjm.executors.for_backend``); tests of
    the pipeline's decisions pass a stub (``qjm.testing.StubExecutor``)."""

    def __init__(self, store: Store | None = None, cfg: Settings | None = None,
                 executor_for: ExecutorFor = for_backend) -> None:
        self.cfg = cfg or load_settings()
        self.store = store or Store(cfg=self.cfg)
        self.executor_for = executor_for
        self.transitions = Transitions(self.store)
        self.local = LocalRunner(self.store, self.cfg, executor_for)
        self.remote = RemoteRunner(self.store, self.cfg, executor_for)
        self._pass_managers: dict[tuple[str, int], PassManager] = {}

    def pass_manager(self, backend_name: str, optimization_level: int) -> PassManager:
        """Built once per worker process and backend: building it reads the whole target."""
        key = (backend_name, optimization_level)
        if key not in self._pass_managers:
            target = self.executor_for(backend_name).backend()
            self._pass_managers[key] = generate_preset_pass_manager(optimization_level=optimization_level,
                                                                    backend=target)
        return self._pass_managers[key]

    def runner(self, rec: JobSetRecord) -> JobRunner:
        return self.local if self.is_local(rec) else self.remote

    def is_local(self, rec: JobSetRecord) -> bool:
        try:
            return self.executor_for(rec.backend).local
        except Exception:  # noqa: BLE001 - the remote runner's guard records why it is unusable
            return False

    def submit_queue(self, rec: JobSetRecord) -> str:
        """Local simulation is CPU work; a remote post is I/O."""
        return tasks.CPU_QUEUE if self.is_local(rec) else tasks.IO_QUEUE

    # ------------------------------------------------------------------ steps
    # Each step records that it started and, when the job goes on, the step it waits for next
    # (``store.steps``): the reconciler re-sends a step whose message was lost.
    def transpile(self, sid: str, i: int, node: str = "") -> None:
        """Transpile the job for its backend. Raises RetryLater when the backend's target cannot
        be had just now."""
        self.store.steps.started(sid, i, Step.TRANSPILE, node)
        try:
            rec = self._transpile(sid, i)
        except RetryLater as later:
            self.store.steps.plan(sid, i, Step.TRANSPILE, tasks.CPU_QUEUE, delay=later.delay, after=Step.TRANSPILE)
            raise
        if rec is not None:
            self.store.steps.plan(sid, i, Step.SUBMIT, self.submit_queue(rec), after=Step.TRANSPILE)

    def _transpile(self, sid: str, i: int) -> JobSetRecord | None:
        """Returns the set's record when the job goes on to its submit step, None when it ended."""
        job = self.store.job(sid, i)
        if job.status.final:
            return None
        rec = self.store.job_set(sid)
        if job.status.rank >= JobStatus.TRANSPILED.rank:  # a redelivery: transpiled already
            return rec
        t = self.transitions
        if rec.cancel_requested:
            t.advance(sid, i, JobStatus.CANCELLED)
            return None
        t.advance(sid, i, JobStatus.TRANSPILING)
        try:
            circuits = codec.circuits_from_qpy(self.store.circuits_qpy(sid, i) or b"")
            opts = RunOptions.from_json(rec.options)
            # One job per task: parallelism comes from many workers, not from forking here.
            isa = self.pass_manager(rec.backend, opts.optimization_level).run(circuits, num_processes=1)
            isa = isa if isinstance(isa, list) else [isa]
        except RetryLater:
            raise  # the backend's target could not be had just now (e.g. a 429): try again later
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this job only
            t.fail(sid, i, "transpilation", exc)
            return None
        after = t.advance(sid, i, JobStatus.TRANSPILED, isa=codec.circuits_to_qpy(isa))
        return None if after.final else rec

    def submit(self, sid: str, i: int, node: str = "") -> None:
        """Run (local) or post (remote) the job. Raises RetryLater when throttled."""
        self.store.steps.started(sid, i, Step.SUBMIT, node)
        rec = self.store.job_set(sid)
        try:
            self.runner(rec).submit(rec, i)
        except RetryLater as later:
            self.store.steps.plan(sid, i, Step.SUBMIT, self.submit_queue(rec), delay=later.delay, after=Step.SUBMIT)
            raise
        if not self.store.job(sid, i).status.final:
            self.store.steps.plan(sid, i, Step.POLL, tasks.IO_QUEUE, after=Step.SUBMIT)

    def poll(self, sid: str, i: int, node: str = "", epoch: int = 0) -> float | None:
        """Check the job until it needs a pause longer than an inline one (``qjm.polling``).
        Returns seconds until the next check, None when final or when this poll belongs to a
        loop that a re-send replaced (at most one live poll loop per job)."""
        deadline = time.monotonic() + polling.INLINE_BUDGET
        while True:
            rec = self.store.job_set(sid)
            delay = self._poll_once(rec, i, node, epoch)
            if delay is None or not self.runner(rec).waits_inline(rec, delay) or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
        if delay is not None:
            self.store.steps.plan(sid, i, Step.POLL, tasks.IO_QUEUE, delay=delay, after=Step.POLL)
        return delay

    def _poll_once(self, rec: JobSetRecord, i: int, node: str, epoch: int) -> float | None:
        if not self.store.steps.started(rec.id, i, Step.POLL, node, epoch):
            job = self.store.job(rec.id, i)
            if job.poll_epoch != epoch or not job.status.final:
                return None  # a stale loop, or a poll of a job that does not wait for one
        try:
            return self.runner(rec).poll(rec, i)
        except RetryLater as later:
            return later.delay

    def assemble(self, sid: str) -> JobSetStatus:
        """Combine every job's records in global order and record the set's final state.

        Only once every job is final: a job whose chain was cut short (a lost message) is still
        alive in Redis, and the reconciler re-sends its step and then this assembly."""
        rec = self.store.job_set(sid)
        if rec.status.final and self.store.combined_result(sid) is not None:
            return rec.status
        jobs = self.store.jobs(sid, rec.n_jobs)
        if not all(job.status.final for job in jobs):
            return rec.status
        names = self.store.names(sid)
        results: list[dict[str, Any]] = []
        for job in jobs:
            records = self.store.job_result(sid, job.index) if job.status is JobStatus.DONE else None
            if records is None or len(records) != job.stop - job.start:
                why = job.error or f"job {job.index} {job.status.value.lower()}"
                records = [codec.failed_record(names[k] if k < len(names) else str(k), why)
                           for k in range(job.start, job.stop)]
            results.extend(records)
        final = job_set_outcome({job.status for job in jobs}, rec.cancel_requested)
        combined = {"backend_name": rec.backend, "backend_version": "", "qobj_id": sid, "job_id": sid,
                    "success": final is JobSetStatus.DONE, "results": results}
        # Before the set reads as final, so nothing is left open behind it.
        self.runner(rec).close_batch(rec)
        if not self.store.finish(sid, final, combined, rec.n_jobs):
            return self.store.job_set(sid).status  # another assembly finished it first
        hooks.emit("job_set_final", job_set_id=sid, status=final, record=rec)
        return final

    def cancel(self, sid: str) -> None:
        """Cancel the set's remote jobs and batch (runs in a worker, which has credentials)."""
        rec = self.store.job_set(sid)
        self.runner(rec).cancel_set(rec)
