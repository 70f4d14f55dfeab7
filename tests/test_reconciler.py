"""The reconciler's decisions, staged in milliseconds: real steps on a real Redis, a scripted
service (``qjm.ops.testing.StubExecutor``), and the broker replaced by a list of what was re-sent.
Time is the reconciler's ``now`` argument, so a grace period costs nothing to wait out.

End-to-end fault tests (real workers, lost messages, SIGKILL, Redis restarts) live in
``tests/test_faults.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobSetStatus, JobStatus
from qjm.config import Settings
from qjm.engine.pipeline import Pipeline
from qjm.engine.reconciler import MAX_RESENDS, Reconciler
from qjm.lifecycle import Step
from qjm.ops.testing import Outcome, StubExecutor, WorkerCrash, create_job_set
from qjm.store import Store, keys

from .circuits import basis_state
from .procs import RedisServer

GRACE = 30.0
REMOTE = "fake_manila"


@dataclass
class Broker:
    """What the reconciler sent, and a queue length it reads; ``run`` plays a re-sent chain."""

    pipe: Pipeline
    waiting: int = 0
    sent: list[tuple[str, int, Step, int]] = field(default_factory=list)
    assembled: list[str] = field(default_factory=list)

    def resend(self, sid: str, i: int, step: Step, local: bool, epoch: int) -> None:
        self.sent.append((sid, i, step, epoch))

    def run(self, sid: str, i: int, step: Step, epoch: int) -> None:
        """The re-sent chain as a worker runs it: its steps from ``step``, then the assembly."""
        if step is Step.TRANSPILE:
            self.pipe.transpile(sid, i, node="w")
        if step in (Step.TRANSPILE, Step.SUBMIT):
            self.pipe.submit(sid, i, node="w")
        while self.pipe.poll(sid, i, node="w", epoch=epoch) is not None:
            pass
        self.pipe.assemble(sid)


@pytest.fixture
def make(server: RedisServer) -> Callable[..., tuple[Pipeline, Reconciler, Broker, StubExecutor]]:
    server.client().flushdb()

    def build(**stub_kw: Any) -> tuple[Pipeline, Reconciler, Broker, StubExecutor]:
        stub = StubExecutor(REMOTE, target=FakeManilaV2(), **stub_kw)
        cfg = Settings(redis_url=server.url, min_poll_interval=0.0, reconcile_grace=GRACE)
        pipe = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub)
        broker = Broker(pipe)
        rec = Reconciler(pipe, node="reconciler", resend=broker.resend, assemble=broker.assembled.append,
                         queue_length=lambda queue: broker.waiting)
        return pipe, rec, broker, stub

    return build


def new_set(pipe: Pipeline, n: int = 2) -> str:
    return create_job_set(pipe.store, [basis_state(k, name=f"e{k}") for k in range(n)], REMOTE)


def test_a_set_whose_messages_never_left_the_client_is_run_after_the_grace(make):
    """The client wrote the set, then died before enqueuing it."""
    pipe, rec, broker, stub = make()
    sid = new_set(pipe)
    now = time.time()
    assert rec.reconcile(now).resent == {}, "the first look only notes when the steps could have started"
    assert rec.reconcile(now + GRACE - 1).resent == {}
    report = rec.reconcile(now + GRACE)
    assert report.resent == {Step.TRANSPILE: 2}
    assert sorted((i, step) for _, i, step, _ in broker.sent) == [(0, Step.TRANSPILE), (1, Step.TRANSPILE)]
    for sent in broker.sent:
        broker.run(*sent)
    assert pipe.store.job_set(sid).status is JobSetStatus.DONE
    assert [len(stub.posts_for(sid, i)) for i in range(2)] == [1, 1]
    assert pipe.store.steps.resent_counts() == {"transpile": 2}


def test_a_backlog_is_not_a_loss(make):
    """Steps waiting behind a long queue are never re-sent, however long they wait; once the
    queue moves past them without starting them, they are, a grace period later."""
    pipe, rec, broker, _ = make()
    broker.waiting = 10_000
    mine = new_set(pipe)
    later = new_set(pipe)  # queued behind mine
    now = time.time()
    for hours in (0, 1, 5):
        assert rec.reconcile(now + hours * 3600).resent == {}
    pipe.store.steps.started(later, 0, Step.TRANSPILE, node="w")  # the queue moved past mine
    pipe.store.steps.heartbeat("w", ttl=600)
    assert rec.reconcile(now + 6 * 3600).resent == {}
    report = rec.reconcile(now + 6 * 3600 + GRACE)
    assert {(sid, i) for sid, i, _, _ in broker.sent} == {(mine, 0), (mine, 1)}
    assert report.resent == {Step.TRANSPILE: 2}


def test_a_step_has_at_most_one_re_send_outstanding(make):
    pipe, rec, broker, _ = make()
    new_set(pipe, 1)
    now = time.time()
    rec.reconcile(now)
    rec.reconcile(now + GRACE)
    assert len(broker.sent) == 1
    for k in range(1, 4):  # the re-sent message is lost too: one more re-send per grace, never a flood
        rec.reconcile(now + k * GRACE + 1)
        rec.reconcile(now + (k + 1) * GRACE + 1)
        assert len(broker.sent) == min(k + 1, MAX_RESENDS)


def test_a_lost_poll_loop_is_replaced_and_the_old_one_retires(make):
    pipe, rec, broker, stub = make()
    sid = new_set(pipe, 1)
    stub.plan(sid, 0, Outcome(polls_queued=2))
    pipe.transpile(sid, 0, node="w")
    pipe.submit(sid, 0, node="w")  # posted; then the poll message is lost
    now = time.time()
    rec.reconcile(now)
    rec.reconcile(now + GRACE)
    [(_, _, step, epoch)] = broker.sent
    assert step is Step.POLL and epoch == 1
    remote_id = pipe.store.job(sid, 0).remote_id
    assert pipe.poll(sid, 0, node="w", epoch=0) is None, "the replaced loop stops"
    assert stub.polls()[remote_id] == 0, "without asking the service"
    broker.run(sid, 0, step, epoch)
    assert pipe.store.job_set(sid).status is JobSetStatus.DONE
    assert stub.polls()[remote_id] == 3 and len(stub.posts) == 1


def test_a_step_on_a_dead_worker_is_re_sent_and_one_on_a_live_worker_is_not(make):
    pipe, rec, broker, _ = make()
    sid = new_set(pipe)
    pipe.store.steps.started(sid, 0, Step.TRANSPILE, node="dead@host")
    pipe.store.steps.started(sid, 1, Step.TRANSPILE, node="live@host")
    pipe.store.steps.heartbeat("live@host", ttl=60)
    now = time.time()
    rec.reconcile(now)
    rec.reconcile(now + GRACE)
    assert [(s, i) for s, i, _, _ in broker.sent] == [(sid, 0)]


def test_a_message_of_small_jobs_counts_as_started_by_its_worker(server):
    """Small local jobs share a message (``dispatch.jobs_per_message``): the jobs at the back of a
    run count as started by the run's worker. A live worker's run is not taken for lost however
    long its first jobs take; a dead worker's unfinished jobs are re-sent, each on its own."""
    server.client().flushdb()
    stub = StubExecutor("aer_simulator", local=True)
    cfg = Settings(redis_url=server.url, reconcile_grace=GRACE)
    pipe = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub)
    broker = Broker(pipe)
    rec = Reconciler(pipe, node="reconciler", resend=broker.resend, assemble=broker.assembled.append,
                     queue_length=lambda queue: 0)
    sid = create_job_set(pipe.store, [basis_state(k, name=f"r{k}") for k in range(6)], "aer_simulator")
    stub.plan(sid, 1, Outcome(crash="before_post"))
    stub.plan(sid, 3, Outcome(crash="before_post"))
    with pytest.raises(WorkerCrash):  # jobs 0-2 on a worker that dies while it runs job 1
        pipe.transpile(sid, 0, node="dead@host", count=3)
    with pytest.raises(WorkerCrash):  # jobs 3-5 on a worker that lives on, stopped here at job 3
        pipe.transpile(sid, 3, node="live@host", count=3)
    pipe.store.steps.heartbeat("live@host", ttl=600)
    assert [pipe.store.job(sid, i).status for i in range(3)] == [JobStatus.DONE, JobStatus.RUNNING,
                                                                 JobStatus.QUEUED]
    now = time.time()
    rec.reconcile(now)
    rec.reconcile(now + GRACE)
    assert sorted(i for _, i, _, _ in broker.sent) == [1, 2]
    for i in (1, 2):
        pipe.transpile(sid, i, node="w")
    pipe.transpile(sid, 3, node="live@host", count=3)
    assert pipe.assemble(sid) is JobSetStatus.DONE


def test_a_tick_reads_a_bounded_number_of_jobs_and_a_large_set_in_turns(make):
    """A deep backlog must not cost Redis a read of every job every tick: a tick reads at most its
    budget, a set larger than its share a window at a time. A lost step is still re-sent, once,
    a pass over the set after its grace."""
    pipe, _, broker, _ = make()
    rec = Reconciler(pipe, node="reconciler", resend=broker.resend, assemble=broker.assembled.append,
                     queue_length=lambda queue: 0, scan_budget=4)
    sid = new_set(pipe, 10)  # its messages never left the client
    now, ran = time.time(), 0
    for tick in range(10):  # a look every 10 s: the first pass notes, the first after the grace re-sends
        assert rec.reconcile(now + 10 * tick).jobs_read <= 4
        for sent in broker.sent[ran:]:  # what is re-sent runs
            broker.run(*sent)
        ran = len(broker.sent)
    assert sorted(i for _, i, _, _ in broker.sent) == list(range(10)), "each job re-sent once"
    assert pipe.store.job_set(sid).status is JobSetStatus.DONE


def test_a_set_whose_jobs_are_all_final_is_assembled(make):
    pipe, rec, broker, _ = make()
    sid = new_set(pipe)
    for i in range(2):
        pipe.transpile(sid, i)
        pipe.submit(sid, i)
        while pipe.poll(sid, i) is not None:
            pass  # every job DONE; the set's assembly message is lost
    now = time.time()
    assert rec.reconcile(now).assembled == []
    assert rec.reconcile(now + GRACE).assembled == [sid]
    assert rec.reconcile(now + GRACE + 1).assembled == [], "sent once per grace period"
    pipe.assemble(broker.assembled[0])
    assert pipe.store.job_set(sid).status is JobSetStatus.DONE
    assert pipe.store.running_ids() == [] and rec.reconcile(now + 3 * GRACE).sets == 0


def test_a_step_lost_again_and_again_fails_its_job_and_frees_its_slot(make):
    pipe, rec, broker, stub = make()
    sid = new_set(pipe, 1)
    stub.plan(sid, 0, Outcome(polls_queued=99))
    pipe.transpile(sid, 0)
    pipe.submit(sid, 0)
    now = time.time()
    for k in range(MAX_RESENDS + 1):
        rec.reconcile(now + 2 * k * GRACE)
        rec.reconcile(now + (2 * k + 1) * GRACE)
    job = pipe.store.job(sid, 0)
    assert len(broker.sent) == MAX_RESENDS
    assert job.status is JobStatus.ERROR and "poll step was lost" in (job.error or "")
    assert stub.cancelled == [job.remote_id] and pipe.store.slots.in_use(REMOTE) == 0
    assert pipe.assemble(sid) is JobSetStatus.ERROR


def test_after_a_redis_restart_started_steps_count_as_lost(make):
    pipe, rec, broker, _ = make()
    sid = new_set(pipe, 1)
    pipe.store.steps.started(sid, 0, Step.TRANSPILE, node="live@host")
    pipe.store.steps.heartbeat("live@host", ttl=600)
    now = time.time()
    rec.reconcile(now)
    rec.reconcile(now + GRACE)
    assert broker.sent == []
    pipe.store.r.set(keys.REDIS_RUN_ID, "an-earlier-run")  # as an AOF restart leaves it
    rec.reconcile(now + GRACE + 1)
    rec.reconcile(now + 2 * GRACE + 1)
    assert [(s, step) for s, _, step, _ in broker.sent] == [(sid, Step.TRANSPILE)]


def test_one_reconciler_per_tick(make):
    pipe, rec, broker, _ = make()
    other = Reconciler(pipe, node="other", resend=broker.resend, assemble=broker.assembled.append,
                       queue_length=lambda queue: 0)
    assert rec.tick() is not None and other.tick() is None
    assert pipe.store.steps.alive(["reconciler", "other"]) == {"reconciler": True, "other": True}
