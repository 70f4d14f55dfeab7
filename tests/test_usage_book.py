"""QPU-time bookkeeping on a real Redis: the reservation scripts under races, settling once, and
the repairs, with the pipeline's decisions driven in-process (``qjm.ops.testing.StubExecutor``)."""

from __future__ import annotations

import threading
import time

import pytest
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobSetStatus, JobStatus, ManagedJobSet
from qjm.config import Settings
from qjm.engine.pipeline import Pipeline
from qjm.errors import RetryLater
from qjm.ops.testing import StubExecutor, create_job_set, drive
from qjm.store import Store
from qjm.store.usage import attempt_ref, month
from qjm.usage import instance_key

from .circuits import basis_state
from .procs import RedisServer

REMOTE = "fake_manila"


@pytest.fixture
def cfg(server: RedisServer) -> Settings:
    server.client().flushdb()
    return Settings(redis_url=server.url, min_poll_interval=0.0, qpu_seconds_per_month=None)


def test_racing_reservations_never_overrun_the_instance_budget(cfg: Settings) -> None:
    """Forty posts race for a 10 s month, 1.5 s each: exactly six get their time; settling an
    attempt twice counts its charge once; settled time is there for the next."""
    store = Store(cfg=cfg)
    grants: list[bool] = []
    lock = threading.Lock()

    def post(k: int) -> None:
        granted = Store(cfg=cfg).usage.reserve_in_instance("inst", "2026-12", f"s:{k}:1", 1.5, 10.0).granted
        with lock:
            grants.append(granted)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert grants.count(True) == 6
    figures = store.usage.month_figures("inst", "2026-12")
    assert figures.reserved == pytest.approx(9.0) and figures.consumed == 0 and len(figures.reservations) == 6
    held = sorted(figures.reservations)
    assert store.usage.settle_in_instance("inst", "2026-12", held[0], 1.0, REMOTE)
    assert not store.usage.settle_in_instance("inst", "2026-12", held[0], 1.0, REMOTE)  # once
    assert store.usage.settle_in_instance("inst", "2026-12", held[1], None, REMOTE)  # never ran: free
    figures = store.usage.month_figures("inst", "2026-12")
    assert (figures.consumed, figures.reserved) == (pytest.approx(1.0), pytest.approx(6.0))
    assert store.usage.totals("inst") == {REMOTE: pytest.approx(1.0)}
    assert store.usage.reserve_in_instance("inst", "2026-12", "s:99:1", 3.0, 10.0).granted
    assert not store.usage.reserve_in_instance("inst", "2026-12", "s:98:1", 0.5, 10.0).granted


def pipeline(cfg: Settings, stub: StubExecutor) -> Pipeline:
    pipe = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub)
    pipe.store.durations.estimate = lambda backend: None  # type: ignore[method-assign]
    pipe.store.durations.pace_estimate = lambda backend: None  # type: ignore[method-assign]
    pipe.remote.post_if_free = lambda *args: None  # type: ignore[method-assign]
    pipe.remote.qpu.qpu.service.ask = lambda: None  # no service to ask here
    return pipe


def test_a_set_budget_holds_jobs_and_a_new_budget_lets_them_go_on(cfg: Settings) -> None:
    """Each job's estimate is made at transpile; a budget for two of five jobs posts two, holds
    three (HELD, saying why) without taking a slot; a lifted budget finishes the set. Charges
    counted are the service's (the stub's answers carry none: each counts its estimate)."""
    stub = StubExecutor(REMOTE, target=FakeManilaV2())
    pipe = pipeline(cfg, stub)
    sid = create_job_set(pipe.store, [basis_state(k, name=f"e{k}") for k in range(5)], REMOTE)
    for i in range(5):
        pipe.transpile(sid, i)
    estimate = pipe.store.job(sid, 0).estimate
    assert estimate is not None and 2.0 < estimate < 2.1  # 2 s per job + 64 shots of a few microseconds
    pipe.store.usage.set_budget(sid, 2.5 * estimate)
    with pytest.raises(AssertionError, match="unfinished"):
        drive(pipe, sid, max_rounds=5)
    statuses = [pipe.store.job(sid, i).status for i in range(5)]
    assert statuses.count(JobStatus.DONE) == 2 and statuses.count(JobStatus.HELD) == 3
    assert "the set's budget" in (pipe.store.job(sid, statuses.index(JobStatus.HELD)).held or "")
    assert pipe.store.slots.in_use(REMOTE) == 0 and len([c for c in stub.calls if c[0] == "submit"]) == 2
    js = ManagedJobSet(sid, pipe.store, cfg)
    estimates = [pipe.store.job(sid, i).estimate or 0.0 for i in range(5)]
    done = [i for i in range(5) if statuses[i] is JobStatus.DONE]
    usage = js.usage()
    assert usage.held == 3 and usage.consumed == pytest.approx(sum(estimates[i] for i in done), rel=1e-9)
    assert usage.estimate == pytest.approx(sum(estimates), rel=1e-9) and usage.consumed <= (usage.budget or 0.0)
    js.update_budget(None)
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    assert js.usage().consumed == pytest.approx(sum(estimates), rel=1e-9)
    assert js.usage().reserved == pytest.approx(0.0, abs=1e-9)


def test_a_reservation_whose_job_ended_unposted_is_returned(cfg: Settings) -> None:
    """A worker reserved a job's time (in its set, then its instance) and died before posting;
    the job was then cancelled: the set's assembly gives both back; nothing is consumed."""
    stub = StubExecutor(REMOTE, target=FakeManilaV2())
    pipe = pipeline(cfg, stub)
    sid = create_job_set(pipe.store, [basis_state(1, name="e")], REMOTE)
    pipe.transpile(sid, 0)
    rec, job = pipe.store.job_set(sid), pipe.store.job(sid, 0)
    assert pipe.remote.qpu.qpu.reserve(rec, job) is None  # ... and the worker is killed here
    instance = instance_key(cfg)
    assert pipe.store.usage.month_figures(instance, month()).reserved == pytest.approx(job.estimate)
    ManagedJobSet(sid, pipe.store, cfg).cancel()
    assert pipe.assemble(sid) is JobSetStatus.CANCELLED
    rec = pipe.store.job_set(sid)
    assert rec.qpu_reserved == pytest.approx(0.0, abs=1e-9) and rec.qpu_consumed == 0
    figures = pipe.store.usage.month_figures(instance, month())
    assert (figures.reserved, figures.consumed, figures.reservations) == (pytest.approx(0.0, abs=1e-9), 0, {})


def test_the_reconciler_settles_what_a_killed_worker_half_settled(cfg: Settings) -> None:
    """A worker counted an attempt's charge in its set and was killed before its instance's
    month (another slot) had it: the reconciler finds the month's reservation, once it is past
    its grace, and settles it with the charge the job's record keeps. Counted once."""
    stub = StubExecutor(REMOTE, target=FakeManilaV2())
    pipe = pipeline(cfg, stub)
    sid = create_job_set(pipe.store, [basis_state(1, name="e")], REMOTE)
    pipe.transpile(sid, 0)
    rec, job = pipe.store.job_set(sid), pipe.store.job(sid, 0)
    assert pipe.remote.qpu.qpu.reserve(rec, job) is None
    assert pipe.store.usage.settle_in_set(sid, 0, 1, 1.75, REMOTE)  # ... and the worker is killed here
    instance = instance_key(cfg)
    assert pipe.remote.qpu.repair(pipe.executor_for, now=time.time()) == 0  # not before its grace
    assert pipe.remote.qpu.repair(pipe.executor_for, now=time.time() + 60) == 1
    assert pipe.remote.qpu.repair(pipe.executor_for, now=time.time() + 60) == 0
    figures = pipe.store.usage.month_figures(instance, month())
    assert (figures.reserved, figures.consumed) == (pytest.approx(0.0, abs=1e-9), pytest.approx(1.75))
    assert attempt_ref(sid, 0, 1) not in figures.reservations
    assert pipe.store.job_set(sid).qpu_consumed == pytest.approx(1.75)


def test_an_instance_budget_holds_a_job_before_it_takes_a_slot(cfg: Settings) -> None:
    stub = StubExecutor(REMOTE, target=FakeManilaV2())
    pipe = pipeline(Settings(redis_url=cfg.redis_url, min_poll_interval=0.0, qpu_seconds_per_month=1.0), stub)
    sid = create_job_set(pipe.store, [basis_state(1, name="e")], REMOTE)
    pipe.transpile(sid, 0)
    with pytest.raises(RetryLater, match="held by the instance's monthly budget"):
        pipe.submit(sid, 0)
    assert pipe.store.job(sid, 0).status is JobStatus.HELD and pipe.store.slots.in_use(REMOTE) == 0
    assert not [c for c in stub.calls if c[0] == "submit"]


def test_held_takes_a_rank_between_transpiled_and_submitted_and_older_ranks_stay() -> None:
    """Ranks are stored with each job: jobs written before HELD existed keep their meaning."""
    from qjm.lifecycle import FINAL_RANK, RANK

    assert {s.value: RANK[s] for s in JobStatus if s is not JobStatus.HELD} == {
        "QUEUED": 0, "TRANSPILING": 1, "TRANSPILED": 2, "SUBMITTED": 3, "RUNNING": 4,
        "DONE": 5, "ERROR": 5, "CANCELLED": 5}
    assert RANK[JobStatus.TRANSPILED] < RANK[JobStatus.HELD] < RANK[JobStatus.SUBMITTED] < FINAL_RANK == 5


def test_a_freed_slot_passes_a_held_job_by_to_the_next_waiting_one(server: RedisServer) -> None:
    """One slot: a set's first job runs, its second and another set's job wait for the slot, and
    the first set's budget is lowered to one job. When that job ends, the hand-off finds the next
    one held by its set's budget and posts the other set's job at once, instead of leaving the
    slot empty until that job's own retry."""
    server.client().flushdb()
    cfg = Settings(redis_url=server.url, min_poll_interval=0.0, max_pending_jobs=1, qpu_seconds_per_month=None)
    stub = StubExecutor(REMOTE, target=FakeManilaV2())
    pipe = pipeline(cfg, stub)
    capped = create_job_set(pipe.store, [basis_state(k, name=f"a{k}") for k in range(2)], REMOTE)
    other = create_job_set(pipe.store, [basis_state(3, name="b")], REMOTE)
    for sid, n in ((capped, 2), (other, 1)):
        for i in range(n):
            pipe.transpile(sid, i)
    pipe.submit(capped, 0)  # posted: the slot is taken
    for sid, i in ((capped, 1), (other, 0)):
        with pytest.raises(RetryLater, match="slots on fake_manila are taken"):
            pipe.submit(sid, i)
    # The first set's budget is lowered while its second job waits for the slot (update_budget).
    ManagedJobSet(capped, pipe.store, cfg).update_budget(1.5 * (pipe.store.job(capped, 0).estimate or 0.0))
    while pipe.poll(capped, 0) is not None:
        pass
    assert pipe.store.job(capped, 1).status is JobStatus.HELD
    assert pipe.store.job(other, 0).remote_id is not None  # posted by the hand-off
    assert pipe.store.slots.in_use(REMOTE) == 1
