"""The steps a worker runs for one job of a set, and the final assembly.

Each step is idempotent: it reads the job's state first and does nothing a previous delivery
already did, so a task redelivered after a worker crash leaves the same state. A step never
raises for a failure of the job itself: the failure is recorded on the job, and the rest of the
set goes on. It raises ``RetryLater`` when the step should run again.

Transpilation is the same for every backend; after it the pipeline only chooses a runner
(``qjm.engine.runners``): local jobs are simulated in the worker, remote ones posted and polled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from qiskit import QuantumCircuit
from qiskit.transpiler import PassManager, generate_preset_pass_manager

from ..backends import Placement
from ..config import Settings
from ..config import settings as load_settings
from ..errors import RetryLater
from ..executors import Executor, Primitive, RunOptions, for_backend
from ..formats import codec
from ..lifecycle import JobSetStatus, JobStatus, Step, job_set_outcome
from ..store import JobRecord, JobSetRecord, Store
from ..store.keys import job_ref
from ..usage import job_seconds
from . import dispatch, hooks, polling, tasks
from .runners import JobRunner, LocalRunner, RemoteRunner
from .runners.base import ExecutorFor, work_from
from .transitions import Transitions

log = logging.getLogger(__name__)


class Pipeline:
    """The job steps, bound to one store. Workers keep one per process.

    ``executor_for`` maps a backend name to its executor (``qjm.executors.for_backend``); tests of
    the pipeline's decisions pass a stub (``qjm.ops.testing.StubExecutor``). ``send_assemble(sid)``
    sends a set's assembly when its last job becomes final (``qjm.engine.dispatch`` by default); the set
    is joined by that count in Redis, not by a Celery chord, so no task result is ever stored."""

    def __init__(self, store: Store | None = None, cfg: Settings | None = None,
                 executor_for: ExecutorFor = for_backend,
                 send_assemble: Callable[[str], None] | None = None, placement: Placement | None = None) -> None:
        self.cfg = cfg or load_settings()
        self.store = store or Store(cfg=self.cfg)
        self.executor_for = executor_for
        cfg_ = self.cfg
        self.send_assemble = send_assemble or (lambda sid: dispatch.send_assemble(cfg_, sid))
        self.transitions = Transitions(self.store, on_set_complete=self._set_complete)
        self.local = LocalRunner(self.store, self.cfg, executor_for, self.transitions)
        self.placement = placement or Placement(self.store, self.cfg)
        self.remote = RemoteRunner(self.store, self.cfg, executor_for, self.transitions,
                                   placement=self.placement, retarget=self.retarget)
        self._pass_managers: dict[tuple[str, int, Primitive], PassManager] = {}
        self._records: dict[str, JobSetRecord] = {}

    def pass_manager(self, backend_name: str, optimization_level: int,
                     primitive: Primitive = Primitive.SAMPLER) -> PassManager:
        """Built once per worker process, backend and primitive: building it reads the whole target."""
        key = (backend_name, optimization_level, primitive)
        if key not in self._pass_managers:
            target = self.executor_for(backend_name).transpile_for(primitive)
            self._pass_managers[key] = generate_preset_pass_manager(optimization_level=optimization_level, **target)
        return self._pass_managers[key]

    def runner(self, rec: JobSetRecord) -> JobRunner:
        return self.local if self.is_local(rec) else self.remote

    def is_local(self, rec: JobSetRecord) -> bool:
        try:
            return self.executor_for(rec.backend).local
        except Exception:  # noqa: BLE001 - the remote runner's guard records why it is unusable
            return False

    def _set_complete(self, sid: str) -> None:
        """The set's last job became final: assemble it. Were this message lost (or this worker
        killed right here), the reconciler sends the assembly of a set whose jobs are all final."""
        self.send_assemble(sid)

    def submit_queue(self, rec: JobSetRecord) -> str:
        """Local simulation is CPU work; a remote post is I/O."""
        return tasks.CPU_QUEUE if self.is_local(rec) else tasks.IO_QUEUE

    # ------------------------------------------------------------------ steps
    # Each step records that it started and, when the job goes on, the step it waits for next
    # (``store.steps``): the reconciler re-sends a step whose message was lost.
    def transpile(self, sid: str, i: int, node: str = "", count: int = 1) -> None:
        """Transpile the job for its backend (and the ``count - 1`` jobs after it, one after
        another: small local jobs share a message, see ``dispatch.jobs_per_message``). Raises RetryLater
        when the backend's target cannot be had just now; the message then comes back whole, and
        the jobs it finished meanwhile are stale deliveries.

        A local job is then simulated by this same task (``_transpile``); a remote one is posted
        by it when a slot is free (``RemoteRunner.post_if_free``)."""
        self.store.steps.started_together(sid, range(i + 1, i + count), Step.TRANSPILE, node)
        for j in range(i, i + count):
            self._transpile_step(sid, j, node)

    def _transpile_step(self, sid: str, i: int, node: str) -> None:
        begun = self.store.steps.begin(sid, i, Step.TRANSPILE, node, JobStatus.TRANSPILING)
        if begun is None:
            return  # a stale delivery: the job is transpiled (or final) already
        if begun.moved:
            self.transitions.announce(sid, i, JobStatus.TRANSPILING)
        try:
            rec = self._transpile(begun.job, replace(self.set_record(sid), cancel_requested=begun.cancel_requested),
                                  begun.circuits)
        except RetryLater as later:
            self.store.steps.plan(sid, i, Step.TRANSPILE, tasks.CPU_QUEUE, delay=later.delay, after=Step.TRANSPILE)
            raise
        if rec is not None:
            self.store.steps.plan(sid, i, Step.SUBMIT, self.submit_queue(rec), after=Step.TRANSPILE)
            if not self.is_local(rec):
                self.remote.post_if_free(self.store.job(sid, i) if rec.fans_out else None, rec, i)

    def set_record(self, sid: str) -> JobSetRecord:
        """The set's record as first read by this process: for what never changes (backend,
        options, jobs), so a transpile step does not read the whole record again."""
        rec = self._records.get(sid)
        if rec is None:
            rec = self._records[sid] = self.store.job_set(sid)
            while len(self._records) > 256:
                self._records.pop(next(iter(self._records)))
        return rec

    def _transpile(self, job: JobRecord, rec: JobSetRecord, qpy: bytes | None) -> JobSetRecord | None:
        """Returns the set's record when the job goes on to its submit step, None when it ended.
        ``qpy`` is the job's circuits, as ``Steps.begin`` read them.

        A local job runs to its end in this task, straight from its transpiled circuits: a job
        once begun finishes before the worker takes the next (its run does not queue behind
        every other job's transpilation), and it costs one message, no stored transpiled
        circuits and no submit step. While it runs its step stays this transpile step, so if
        the worker dies the reconciler re-sends it, and the job is transpiled and run again."""
        sid, i = rec.id, job.index
        if job.status.final:
            return None
        local = self.is_local(rec)
        if job.status.rank >= JobStatus.TRANSPILED.rank and not local:  # a redelivery: transpiled already
            return rec
        t = self.transitions
        if rec.cancel_requested:
            t.cancel(sid, i)
            return None
        try:
            circuits = codec.circuits_from_qpy(qpy or b"")
            if rec.fans_out and not job.backend:
                job = replace(job, backend=self.placement.place(rec, i, max(c.num_qubits for c in circuits)))
            isa = self._isa(rec, rec.job_backend(job), circuits)
        except RetryLater:
            raise  # the backend's target could not be had just now (e.g. a 429): try again later
        except Exception as exc:  # noqa: BLE001 - any failure belongs to this job only
            t.fail(sid, i, "transpilation", exc)
            return None
        if local:
            self.local.run(rec, job, isa)
            return None
        try:
            self._prepare(rec, i, isa, rec.job_backend(job))
        except RetryLater:
            raise
        except Exception as exc:  # noqa: BLE001 - a pub the primitive refuses fails this job only
            t.fail(sid, i, "preparation", exc)
            return None
        after = t.advance(sid, i, JobStatus.TRANSPILED, isa=codec.circuits_to_qpy(isa),
                          estimate=self._estimate(rec, i, isa, rec.job_backend(job)))
        if after.final:
            return None
        if rec.fans_out:  # from its placement on, the job counts as waiting there
            self.store.slots.wait(rec.job_backend(job), job_ref(sid, i), self.store.waiting_since(sid, i))
        return rec

    def _isa(self, rec: JobSetRecord, backend: str, circuits: list[QuantumCircuit]) -> list[QuantumCircuit]:
        opts = RunOptions.from_json(rec.options)
        # One job per task: parallelism comes from many workers, not from forking here.
        pm = self.pass_manager(backend, opts.optimization_level, Primitive(opts.primitive))
        isa = pm.run(circuits, num_processes=1)
        return isa if isinstance(isa, list) else [isa]

    def retarget(self, rec: JobSetRecord, i: int, backend: str) -> None:
        """Transpile (and prepare) an unposted job anew for ``backend`` and place it there
        (``RemoteRunner`` calls this, holding the job's posting lock, when the job moves)."""
        isa = self._isa(rec, backend, codec.circuits_from_qpy(self.store.placing.circuits_qpy(rec.id, i) or b""))
        self.store.placing.retarget(rec.id, i, backend, codec.circuits_to_qpy(isa))
        self.placement.note_used(rec.id, backend)
        self._prepare(rec, i, isa, backend)
        self.store.set_job_fields(rec.id, i, estimate=self._estimate(rec, i, isa, backend))

    def _estimate(self, rec: JobSetRecord, i: int, isa: list[QuantumCircuit], backend: str) -> str:
        """qjm's estimate of the job's QPU seconds on ``backend`` (``qjm.usage.estimate``), as
        stored ('' when it cannot be made: the job then counts the per-job overhead)."""
        try:
            executor = self.executor_for(backend)
            return repr(job_seconds(executor.executions(work_from(self.store, rec, i, isa)), executor.backend()))
        except Exception as exc:  # noqa: BLE001 - an estimate never stops a job
            log.warning("job set %s job %d: no QPU time estimate (%s)", rec.id, i, exc)
            return ""

    def _prepare(self, rec: JobSetRecord, i: int, isa: list[QuantumCircuit], backend: str) -> None:
        """The executor's CPU-side preparation of the job (e.g. the Estimator's program), stored
        before the job reads TRANSPILED, so a post never computes while it holds a slot."""
        executor = self.executor_for(backend)
        if type(executor).prepare is Executor.prepare:
            return
        work = work_from(self.store, rec, i, isa)
        text = executor.prepare(work)
        if text is not None:
            self.store.set_prepared(rec.id, i, text)

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
        """Check the job until it needs a pause longer than an inline one (``qjm.engine.polling``).
        Returns seconds until the next check, None when final or when this poll belongs to a
        loop that a re-send replaced (at most one live poll loop per job)."""
        deadline = time.monotonic() + polling.INLINE_BUDGET
        while True:
            # A pause runs from the check's start: the check's own requests (Redis, the service)
            # took 5-10 ms of a 20 ms pause near a job's end, which the end then waited longer.
            began = time.monotonic()
            rec = self.store.job_set(sid)
            delay = self._poll_once(rec, i, node, epoch)
            if delay is None or not self.runner(rec).waits_inline(rec, delay) or began + delay > deadline:
                break
            time.sleep(max(0.0, began + delay - time.monotonic()))
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
        """Record the set's final state once every job is final; the results stay per job
        (``qjm.client.results`` reads only what it is asked for).

        A job whose chain was cut short (a lost message) is still alive in Redis, and the
        reconciler re-sends its step and then this assembly."""
        rec = self.store.job_set(sid)
        if rec.status.final:
            return rec.status
        statuses = self.store.job_statuses(sid, rec.n_jobs)
        if not all(status.final for status in statuses):
            return rec.status
        final = job_set_outcome(set(statuses), rec.cancel_requested)
        # Before the set reads as final, so nothing is left open behind it.
        self.runner(rec).close_batch(rec)
        if not self.is_local(rec):
            self.remote.qpu.leftovers(rec, self.executor_for)
        # The status index first (a step of its own, outside the set's hash slot; the reconciler
        # repairs it): whoever wakes on the final notice then finds the set under its status.
        self.store.index.set_status(rec, final.value)
        if not self.store.finish(sid, final):
            return self.store.job_set(sid).status  # another assembly finished it first
        hooks.emit("job_set_final", job_set_id=sid, status=final, record=rec)
        return final

    def send_jobs(self, sid: str, n_jobs: int, local: bool, per_message: int = 1) -> None:
        """Send a large set's job messages for its client, once: a redelivery of this task sends
        nothing (the reconciler sends what a worker that died mid-way did not)."""
        if self.store.claim_jobs_sent(sid):
            dispatch.send_jobs(self.cfg, sid, n_jobs, local, per_message)

    def cancel(self, sid: str, jobs: list[int] | None = None) -> None:
        """Cancel the set's remote jobs (those of ``jobs`` when the user cancelled them alone) and
        free their slots (runs in a worker, which has credentials)."""
        rec = self.store.job_set(sid)
        self.runner(rec).cancel_set(rec, jobs)
        # The user's cancel may have made the set's last job final (the client does not send
        # the assembly): send it now, after the remote jobs are cancelled.
        if all(status.final for status in self.store.job_statuses(sid, rec.n_jobs)):
            self.send_assemble(sid)
