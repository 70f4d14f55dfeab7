"""An in-process stand-in for a backend, to test the pipeline's decisions in milliseconds.

``StubExecutor`` implements the executor protocol (``qjm.executors.base``) with no network: it
plays a remote service (``local=False``) whose jobs follow a script, or a local simulator
(``local=True``). It records every call, so a test can assert what the *service* saw: how
many posts each job got, how many polls, which jobs were cancelled, how many batches were
opened and closed. The idea is dramatiq's ``StubBroker``: the real code, a fake edge.

Usage::

    stub = StubExecutor("fake_manila")
    pipe = Pipeline(store, cfg, executor_for=lambda name: stub)
    sid = create_job_set(store, circuits, "fake_manila", per_job=2)
    stub.plan(sid, 0, Outcome(refuse=RetryLater("429 Too Many Requests", 2.0)), Outcome(polls_queued=1))
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    assert len(stub.posts_for(sid, 0)) == 1

Nothing here is imported by qjm itself; it ships in the package so users can test their own
pipelines (hooks, reports, options) the same way.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from qiskit import QuantumCircuit
from qiskit.providers import BackendV2

from ..engine.tasks import CPU_QUEUE
from ..errors import ExecutorError, RetryLater
from ..executors.base import Executor, JobWork, Poll, RunOptions, Submission, SubmitContext
from ..formats import codec, validation
from ..lifecycle import JobSetStatus, JobStatus
from ..store import JobSetRecord, Store, new_job_set_id

if TYPE_CHECKING:
    from ..engine.pipeline import Pipeline

__all__ = ["Outcome", "StubExecutor", "StubJob", "WorkerCrash", "create_job_set", "drive"]


class WorkerCrash(BaseException):
    """A worker process dying in the middle of a step.

    A ``BaseException``, not an ``Exception``, so none of the pipeline's ``except Exception``
    handlers records it: like a real crash, the step just stops where it was."""


@dataclass(frozen=True)
class Outcome:
    """What the service does with one ``submit`` call for a job.

    ``refuse`` is raised instead of posting: ``RetryLater`` for a 429 or a pending-limit refusal,
    ``ExecutorError`` for a job the service rejects. ``crash`` kills the worker before the post
    reaches the service, or after the service took it but before ``submit`` returns (the post is
    then *lost* to qjm, yet findable by its tags). A posted job answers ``polls_queued`` polls
    with SUBMITTED, then ``polls_running`` with RUNNING, then ``end`` (with ``error`` for ERROR;
    ``repost`` marks an ERROR as one of the service's, after which the job is posted again, as
    when its batch ended before it ran).
    ``counts`` gives each circuit's hex-keyed counts; by default all shots land on outcome 0.
    ``during_post`` runs once the service holds the job, before ``submit`` returns: the place to
    put a ``cancel()`` racing the post."""

    refuse: Exception | None = None
    crash: Literal["before_post", "after_post"] | None = None
    polls_queued: int = 0
    polls_running: int = 0
    end: JobStatus = JobStatus.DONE
    error: str | None = None
    repost: bool = False
    counts: Sequence[dict[str, int]] | None = None
    #: Runs inside ``submit`` before the post (and before the context's fence is asked): the
    #: client's own requests, during which a cut-off worker may lose its posting lock.
    before_post: Callable[[], None] | None = None
    during_post: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if not self.end.final:
            raise ValueError(f"an outcome ends in a final status, not {self.end.value}")


@dataclass
class StubJob:
    """One job as the stub service holds it."""

    remote_id: str
    job_set_id: str
    job: int
    attempt: int
    tags: tuple[str, ...]
    batch_id: str | None
    outcome: Outcome
    work: JobWork
    polls: int = 0
    cancelled: bool = False

    @property
    def status(self) -> JobStatus:
        """The service's view after the polls so far (cancelling a finished job changes nothing)."""
        o = self.outcome
        if self.cancelled:
            return JobStatus.CANCELLED
        if self.polls > o.polls_queued + o.polls_running:
            return o.end
        return JobStatus.RUNNING if self.polls > o.polls_queued else JobStatus.SUBMITTED


class StubExecutor(Executor):
    """A scripted backend that records every call. Thread-safe, so races can be staged.

    ``target`` is the backend transpilation targets (default: an ideal ``AerSimulator``).
    ``pending_limit``, if set, makes the service itself refuse a post (``RetryLater``) while that
    many of its jobs are pending, as IBM does: qjm's slots should keep that from happening.
    ``batch_delay`` makes ``open_batch`` slow, to widen the window of concurrent first posts."""

    def __init__(self, name: str = "stub", *, local: bool = False, target: BackendV2 | None = None,
                 default: Outcome = Outcome(), pending_limit: int | None = None, batches: bool = True,
                 batch_delay: float = 0.0) -> None:
        super().__init__(name)
        self.local = local
        self.default = default
        self.pending_limit = pending_limit
        self.batches = batches
        self.batch_delay = batch_delay
        self._target = target
        self._plans: dict[tuple[str, int], deque[Outcome]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        #: Every job the service took, in post order (lost posts included).
        self.posts: list[StubJob] = []
        #: Every call, in order: ``(verb, argument)``, e.g. ``("submit", ctx)``, ``("poll", remote_id)``.
        self.calls: list[tuple[str, Any]] = []
        self.batches_opened: list[str] = []
        #: ``(batch_id, cancel)`` per ``close_batch`` call.
        self.batches_closed: list[tuple[str, bool]] = []
        #: The most jobs ever pending on the service at once.
        self.peak_pending = 0

    # ----------------------------------------------------------------- scripting
    def plan(self, job_set_id: str, job: int, *outcomes: Outcome) -> StubExecutor:
        """Outcomes for this job's next ``submit`` calls, in order; then ``default``."""
        with self._lock:
            self._plans[(job_set_id, job)].extend(outcomes)
        return self

    def _next_outcome(self, ctx: SubmitContext) -> Outcome:
        plan = self._plans.get((ctx.job_set_id, ctx.job))
        return plan.popleft() if plan else self.default

    # ----------------------------------------------------------------- what the service saw
    def posts_for(self, job_set_id: str, job: int) -> list[StubJob]:
        with self._lock:
            return [p for p in self.posts if p.job_set_id == job_set_id and p.job == job]

    def job(self, remote_id: str) -> StubJob:
        with self._lock:
            for p in self.posts:
                if p.remote_id == remote_id:
                    return p
        raise ExecutorError(f"stub service has no job {remote_id!r}")

    def pending(self) -> list[StubJob]:
        """Jobs the service still counts as pending (not final as of their last poll)."""
        with self._lock:
            return [p for p in self.posts if not p.status.final]

    def count(self, verb: str) -> int:
        with self._lock:
            return sum(1 for v, _ in self.calls if v == verb)

    def polls(self) -> Counter[str]:
        """Remote id -> status requests made for it."""
        with self._lock:
            return Counter(arg for verb, arg in self.calls if verb == "poll")

    @property
    def cancelled(self) -> list[str]:
        """Remote ids qjm asked the service to cancel, in order."""
        with self._lock:
            return [arg for verb, arg in self.calls if verb == "cancel"]

    # ----------------------------------------------------------------- the executor protocol
    def backend(self) -> BackendV2:
        if self._target is None:
            from qiskit_aer import AerSimulator

            self._target = AerSimulator()
        return self._target

    def submit(self, work: JobWork, ctx: SubmitContext) -> Submission:
        with self._lock:
            self.calls.append(("submit", ctx))
            outcome = self._next_outcome(ctx)
        if outcome.refuse is not None:
            raise outcome.refuse
        if outcome.crash == "before_post":
            raise WorkerCrash(f"worker died before posting job {ctx.job} of {ctx.job_set_id}")
        if outcome.before_post is not None:
            outcome.before_post()
        if ctx.fence is not None and not self.local:
            ctx.fence()
        if self.local:
            if outcome.end is not JobStatus.DONE:
                raise ExecutorError(outcome.error or f"simulation ended {outcome.end.value}")
            remote_id = f"stub-local-{next(self._ids)}"
            return Submission(remote_id, output=self._records(work, outcome))
        with self._lock:
            if self.pending_limit is not None and len(self.pending()) >= self.pending_limit:
                raise RetryLater(f"stub service: {self.pending_limit} jobs already pending", 1.0)
            job = StubJob(f"stub-{next(self._ids)}", ctx.job_set_id, ctx.job, ctx.attempt, tuple(ctx.tags),
                          ctx.batch_id, outcome, work)
            self.posts.append(job)
            self.peak_pending = max(self.peak_pending, len(self.pending()))
        if outcome.during_post is not None:
            outcome.during_post()
        if outcome.crash == "after_post":
            raise WorkerCrash(f"worker died after posting {job.remote_id}, before recording it")
        return Submission(job.remote_id)

    def find_submitted(self, ctx: SubmitContext) -> str | None:
        """Like the real service, the stub can only tell by tags: a job carrying all of ``ctx.tags``."""
        with self._lock:
            self.calls.append(("find_submitted", ctx))
            if not ctx.tags:
                return None
            for p in self.posts:
                if set(ctx.tags) <= set(p.tags):
                    return p.remote_id
        return None

    def poll(self, remote_id: str) -> Poll:
        with self._lock:
            self.calls.append(("poll", remote_id))
            job = self.job(remote_id)
            job.polls += 1
            status = job.status
        failed = status is JobStatus.ERROR
        return Poll(status, job.outcome.error if failed else None, repost=failed and job.outcome.repost)

    def fetch(self, remote_id: str, work: JobWork) -> list[dict[str, Any]]:
        with self._lock:
            self.calls.append(("fetch", remote_id))
            job = self.job(remote_id)
        if job.status is not JobStatus.DONE:
            raise ExecutorError(f"stub job {remote_id} is {job.status.value}, it has no results")
        return self._records(work, job.outcome)

    def cancel(self, remote_id: str) -> None:
        with self._lock:
            self.calls.append(("cancel", remote_id))
            job = self.job(remote_id)
            job.cancelled = job.cancelled or not job.status.final

    def open_batch(self, job_set_id: str) -> str | None:
        with self._lock:
            self.calls.append(("open_batch", job_set_id))
        if not self.batches:
            return None
        time.sleep(self.batch_delay)
        with self._lock:
            batch_id = f"stub-batch-{next(self._ids)}"
            self.batches_opened.append(batch_id)
        return batch_id

    def close_batch(self, batch_id: str, cancel: bool = False) -> None:
        with self._lock:
            self.calls.append(("close_batch", batch_id))
            self.batches_closed.append((batch_id, cancel))

    @staticmethod
    def _records(work: JobWork, outcome: Outcome) -> list[dict[str, Any]]:
        shots = work.options.shots
        counts = outcome.counts or [{"0x0": shots}] * len(work.circuits)
        if len(counts) != len(work.circuits):
            raise ExecutorError(f"script gives counts for {len(counts)} circuits, the job has {len(work.circuits)}")
        return [codec.record(c, shots, k) for c, k in zip(work.circuits, counts, strict=False)]


# --------------------------------------------------------------------- driving the pipeline
def create_job_set(store: Store, circuits: Sequence[QuantumCircuit], backend: str, per_job: int = 1,
                   options: RunOptions = RunOptions(shots=64, optimization_level=1),
                   name: str | None = None) -> str:
    """Write a job set straight into the store, with nothing enqueued: the test runs the steps.

    ``JobManager.run`` would also validate against the real backend and send a Celery chord;
    neither is what a test of the pipeline's decisions is about."""
    bounds = validation.split(len(circuits), per_job)
    rec = JobSetRecord(id=new_job_set_id(), name=name, backend=backend, tags=[], created=time.time(),
                       n_experiments=len(circuits), job_bounds=bounds, options=options.to_json())
    store.create_job_set(rec, [codec.circuits_to_qpy(circuits[a:b]) for a, b in bounds],
                         [c.name for c in circuits], queue=CPU_QUEUE)
    return rec.id


def drive(pipeline: Pipeline, *sids: str, max_rounds: int = 100) -> list[JobSetStatus]:
    """Run every job's chain (transpile -> submit -> poll) and each set's assembly in this
    process, as workers would, but with no waiting: a ``RetryLater`` or a poll delay just means
    "next round". Sets that share a backend share its slots, so drive them together.

    Returns each set's final status; raises ``AssertionError`` if jobs are still unfinished
    after ``max_rounds`` rounds (e.g. a slot that is never given back)."""
    chains = [(sid, i) for sid in sids for i in range(pipeline.store.job_set(sid).n_jobs)]
    for sid, i in chains:
        pipeline.transpile(sid, i)
    stage = {chain: "submit" for chain in chains}
    for _ in range(max_rounds):
        for (sid, i), step in list(stage.items()):
            try:
                if step == "submit":
                    pipeline.submit(sid, i)
                    stage[(sid, i)] = step = "poll"
                if step == "poll" and pipeline.poll(sid, i) is None:
                    del stage[(sid, i)]
            except RetryLater:
                pass
        if not stage:
            return [pipeline.assemble(sid) for sid in sids]
    raise AssertionError(f"unfinished after {max_rounds} rounds (job set, job) -> step: {stage}")
