"""The pipeline's decisions (slots, hand-off, exactly-once posting, cancel races, orphans,
assembly), each staged in milliseconds: the real steps and a real Redis, with a scripted
service (``qjm.ops.testing.StubExecutor``) instead of a network, and no Celery worker.

Remote sets use the backend name ``fake_manila``, so transpilation runs for real on that device's
target; only what happens after it (the service) is scripted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from qiskit import QuantumCircuit
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobSetFailedError, JobSetStatus, JobStatus, ManagedJobSet
from qjm.config import Settings
from qjm.engine import dispatch, hooks
from qjm.engine.pipeline import Pipeline
from qjm.errors import BatchClosedError, ExecutorError, RetryLater
from qjm.formats import codec
from qjm.lifecycle import Step
from qjm.ops.testing import Outcome, StubExecutor, WorkerCrash, create_job_set, drive
from qjm.store import Store, keys

from .circuits import basis_state
from .procs import RedisServer

REMOTE = "fake_manila"
MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make(server: RedisServer) -> MakePipeline:
    """A pipeline on an empty Redis whose every backend is ``stub``; polls are never deferred."""
    server.client().flushdb()

    def build(stub: StubExecutor, max_pending: int = 3) -> Pipeline:
        cfg = Settings(redis_url=server.url, max_pending_jobs=max_pending, min_poll_interval=0.0,
                       max_poll_interval=60)
        pipe = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub)
        # Polls planned from a backend's track record (tests/test_polling.py) would defer a poll
        # of a job just posted by however long the previous ones took on this machine: both its
        # post-to-end times and its pace per queued job (a job's own estimate). Here every poll
        # asks the service, whatever the machine's load.
        pipe.store.durations.estimate = lambda backend: None  # type: ignore[method-assign]
        pipe.store.durations.pace_estimate = lambda backend: None  # type: ignore[method-assign]
        # The submit step's decisions are staged one at a time: a transpile here leaves its job
        # ready to submit. Posting from the transpile task when a slot is free has its own test
        # (``test_a_transpiled_job_is_posted_by_its_transpile_task_when_a_slot_is_free``).
        pipe.remote.post_if_free = lambda backend, sid, i: None  # type: ignore[method-assign]
        return pipe
    return build


def remote_stub(**kw: Any) -> StubExecutor:
    return StubExecutor(REMOTE, target=FakeManilaV2(), **kw)


def new_set(pipe: Pipeline, n: int = 1, per_job: int = 1, backend: str = REMOTE, prefix: str = "e") -> str:
    """A set of ``n`` basis-state circuits, every job transpiled (so ready to submit)."""
    sid = create_job_set(pipe.store, [basis_state(k % 8, name=f"{prefix}{k}") for k in range(n)], backend, per_job)
    for i in range(pipe.store.job_set(sid).n_jobs):
        pipe.transpile(sid, i)
    return sid


def status(pipe: Pipeline, sid: str, i: int = 0) -> JobStatus:
    return pipe.store.job(sid, i).status


def in_use(pipe: Pipeline) -> int:
    return pipe.store.slots.in_use(REMOTE)


def waits(pipe: Pipeline, sid: str, i: int = 0) -> None:
    """Submitting this job finds every slot taken: it queues and asks to be retried."""
    with pytest.raises(RetryLater, match="pending-job slots on fake_manila are taken"):
        pipe.submit(sid, i)


def job_set(pipe: Pipeline, sid: str) -> ManagedJobSet:
    return ManagedJobSet(sid, pipe.store, pipe.cfg)


# ---------------------------------------------------------------------------- slots
def test_the_slot_limit_holds_across_sets_and_every_job_is_posted_once(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=2)
    a, b = new_set(pipe, 3, prefix="a"), new_set(pipe, 3, prefix="b")
    pipe.submit(a, 0)
    pipe.submit(b, 0)
    for sid, i in [(a, 1), (b, 1), (a, 2), (b, 2), (a, 1)]:  # the last one is a redelivery
        waits(pipe, sid, i)
    assert len(stub.posts) == 2 and in_use(pipe) == 2
    assert drive(pipe, a, b) == [JobSetStatus.DONE, JobSetStatus.DONE]
    assert stub.peak_pending == 2, "the service never saw more pending jobs than the limit"
    assert sorted((p.job_set_id, p.job) for p in stub.posts) == sorted((s, i) for s in (a, b) for i in range(3))
    assert in_use(pipe) == 0


def test_a_freed_slot_goes_to_the_longest_waiting_job_posted_by_the_task_that_freed_it(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    x, b, c = new_set(pipe), new_set(pipe), new_set(pipe)
    pipe.submit(x, 0)
    waits(pipe, b)
    waits(pipe, c)
    assert pipe.poll(x, 0) is None and status(pipe, x) is JobStatus.DONE
    # x's poll freed the slot and posted b, which waited longest; c still waits.
    assert [p.job_set_id for p in stub.posts] == [x, b]
    assert status(pipe, b) is JobStatus.SUBMITTED and status(pipe, c) is JobStatus.TRANSPILED
    pipe.submit(b, 0)  # b's own retry comes back, finds it posted, and goes on to poll
    assert len(stub.posts) == 2
    waits(pipe, c)
    pipe.poll(b, 0)
    assert [p.job_set_id for p in stub.posts] == [x, b, c] and in_use(pipe) == 1


def test_a_freed_slot_skips_a_waiter_whose_set_was_cancelled(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    x, b, c = new_set(pipe), new_set(pipe), new_set(pipe)
    pipe.submit(x, 0)
    waits(pipe, b)
    waits(pipe, c)
    pipe.store.request_cancel(b)
    pipe.poll(x, 0)
    assert status(pipe, c) is JobStatus.SUBMITTED, "the freed slot went to the next waiter that wants it"


def test_a_transpiled_job_is_posted_by_its_transpile_task_when_a_slot_is_free(make):
    """A set's first jobs go out from their transpile task while slots are free; the rest, and any
    job once others wait for a slot, are left to their submit step, which queues them in order.
    The submit step that follows an early post finds the job posted and does not post again."""
    stub = remote_stub()
    pipe = make(stub, max_pending=2)
    del pipe.remote.post_if_free  # the fixture's "transpile only" override
    first = create_job_set(pipe.store, [basis_state(k, name=f"f{k}") for k in range(3)], REMOTE, 1)
    for i in range(3):
        pipe.transpile(first, i)
    assert [p.job for p in stub.posts] == [0, 1] and in_use(pipe) == 2
    assert [status(pipe, first, i) for i in range(3)] == [JobStatus.SUBMITTED, JobStatus.SUBMITTED, JobStatus.TRANSPILED]
    pipe.submit(first, 0)  # the chain's submit step after the early post
    assert len(stub.posts) == 2 and pipe.store.job(first, 0).step is Step.POLL
    waits(pipe, first, 2)
    pipe.poll(first, 0)  # frees a slot and hands it to job 2, which waited
    assert [p.job for p in stub.posts] == [0, 1, 2]

    later = create_job_set(pipe.store, [basis_state(1, name="l0"), basis_state(2, name="l1")], REMOTE, 1)
    pipe.transpile(later, 0)  # every slot taken: nothing posted, nothing queued
    assert len(stub.posts) == 3 and status(pipe, later) is JobStatus.TRANSPILED
    waits(pipe, later, 0)
    pipe.submit(first, 1)
    pipe.poll(first, 1)  # the freed slot goes to the waiter: the later set's job 0
    assert stub.posts[-1].job_set_id == later and stub.posts[-1].job == 0
    pipe.submit(first, 2)
    pipe.poll(first, 2)  # a slot is free, but ...
    pipe.store.slots.wait(REMOTE, "someone-else:0", 0.0)  # ... a job waits for it: it comes first
    pipe.transpile(later, 1)
    assert len(stub.posts) == 4 and status(pipe, later, 1) is JobStatus.TRANSPILED and in_use(pipe) == 1
    assert stub.peak_pending == 2


# ---------------------------------------------------------------------------- exactly once
def test_a_redelivered_submit_never_posts_twice(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    lock = pipe.store.posting_lock(sid, 0)
    assert lock.acquire()  # another delivery of the same task is posting right now
    with pytest.raises(RetryLater, match="being posted by another delivery"):
        pipe.submit(sid, 0)
    assert stub.posts == []
    lock.release()
    pipe.submit(sid, 0)
    pipe.submit(sid, 0)
    assert len(stub.posts_for(sid, 0)) == 1 and in_use(pipe) == 1
    assert pipe.store.job(sid, 0).remote_id == stub.posts[0].remote_id
    pipe.poll(sid, 0)
    pipe.submit(sid, 0)  # a very late redelivery after the end
    assert len(stub.posts) == 1 and status(pipe, sid) is JobStatus.DONE


@pytest.mark.parametrize("crash", ["after_post", "before_post"])
def test_a_post_whose_worker_died_is_found_by_its_tag_or_made_once(make, crash):
    """after_post: the service took the job, but its id never reached Redis (the post is "lost"
    to qjm). before_post: the worker died with the job marked as being posted, before posting."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    stub.plan(sid, 0, Outcome(crash=crash))
    with pytest.raises(WorkerCrash):
        pipe.submit(sid, 0)
    job = pipe.store.job(sid, 0)
    assert job.remote_id is None and job.post_attempted is not None
    pipe.submit(sid, 0)  # the broker redelivers the task
    [post] = stub.posts_for(sid, 0)
    assert pipe.store.job(sid, 0).remote_id == post.remote_id and status(pipe, sid) is JobStatus.SUBMITTED
    assert stub.count("find_submitted") == 1, "the service is asked only after a post was attempted"
    assert post.tags[-1] == f"qjm:{sid}:0:a1", "the post carries its attempt's tag"
    assert in_use(pipe) == 1
    assert drive(pipe, sid) == [JobSetStatus.DONE] and len(stub.posts) == 1


def test_after_a_redis_restart_that_lost_the_post_record_the_service_is_asked_first(make):
    """appendfsync everysec: a kill -9 may drop the last second, here the record that a post
    began. Redis's run_id changed since the job was written, so the tag is looked up first."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    stub.plan(sid, 0, Outcome(crash="after_post"))
    with pytest.raises(WorkerCrash):
        pipe.submit(sid, 0)
    # What an AOF replay that lost the last second leaves: no post_attempted, and the job last
    # written under the Redis that died.
    pipe.store.r.hdel(keys.job(sid, 0), "post_attempted")
    pipe.store.r.hset(keys.job(sid, 0), "run_id", "the-redis-that-died")
    pipe.submit(sid, 0)
    [post] = stub.posts_for(sid, 0)
    assert pipe.store.job(sid, 0).remote_id == post.remote_id and stub.count("find_submitted") == 1


def test_a_delivery_that_lost_its_posting_lock_mid_post_does_not_post(make):
    """Cut off while its client made its requests, the lock expired and another delivery took
    it: the fence in front of the post stops this one."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    taken = lambda: pipe.store.r.set(keys.posting_lock(sid, 0), "another-delivery")  # noqa: E731
    stub.plan(sid, 0, Outcome(before_post=taken))
    with pytest.raises(RetryLater, match="posting lock expired"):
        pipe.submit(sid, 0)
    assert stub.posts == [] and pipe.store.job(sid, 0).remote_id is None


def test_a_first_post_asks_the_service_nothing_before_posting(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    pipe.submit(sid, 0)
    assert [verb for verb, _ in stub.calls] == ["open_batch", "submit"]


# ---------------------------------------------------------------------------- refusals
def test_a_retry_later_from_the_service_frees_the_slot_and_the_retry_posts(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    sid = new_set(pipe)
    stub.plan(sid, 0, Outcome(refuse=RetryLater("429 Too Many Requests", 7.0)))
    with pytest.raises(RetryLater, match="429") as refused:
        pipe.submit(sid, 0)
    assert refused.value.delay == 7.0, "the step comes back when the service said to"
    assert in_use(pipe) == 0 and status(pipe, sid) is JobStatus.TRANSPILED
    other = new_set(pipe)
    pipe.submit(other, 0)  # the slot really is free for anyone
    assert status(pipe, other) is JobStatus.SUBMITTED
    pipe.poll(other, 0)
    pipe.submit(sid, 0)
    assert status(pipe, sid) is JobStatus.SUBMITTED and len(stub.posts_for(sid, 0)) == 1


def test_a_refused_post_fails_only_that_job_and_frees_its_slot(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    sid = new_set(pipe, 4, per_job=2)
    stub.plan(sid, 0, Outcome(refuse=ExecutorError("the job exceeds the device's maximum shots")))
    pipe.submit(sid, 0)
    job = pipe.store.job(sid, 0)
    assert job.status is JobStatus.ERROR and in_use(pipe) == 0
    assert job.error == "submission failed: ExecutorError: the job exceeds the device's maximum shots"
    pipe.submit(sid, 0)  # redelivered: a failed job is not posted again
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    assert [p.job for p in stub.posts] == [1]
    results = job_set(pipe, sid).results(timeout=1, partial=True)
    assert results.failed_experiments == [0, 1]
    assert [results.get_counts(name) for name in ("e2", "e3")] == [{"000": 64}, {"000": 64}]


def test_a_refused_post_hands_its_slot_to_the_waiting_job(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    x, refused, waiter = new_set(pipe), new_set(pipe), new_set(pipe)
    stub.plan(refused, 0, Outcome(refuse=ExecutorError("invalid job")))
    pipe.submit(x, 0)
    waits(pipe, refused)
    waits(pipe, waiter)
    pipe.poll(x, 0)  # frees the slot: handed to `refused`, whose post the service refuses
    assert status(pipe, refused) is JobStatus.ERROR
    assert status(pipe, waiter) is JobStatus.SUBMITTED


# ---------------------------------------------------------------------------- cancel
def test_cancel_while_posting_cancels_the_remote_job_and_hands_its_slot_on(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    sid, waiter = new_set(pipe), new_set(pipe)

    def meanwhile() -> None:  # while the post is in flight: another job queues, the user cancels
        waits(pipe, waiter)
        pipe.store.request_cancel(sid)

    stub.plan(sid, 0, Outcome(during_post=meanwhile))
    pipe.submit(sid, 0)
    [post] = stub.posts_for(sid, 0)
    job = pipe.store.job(sid, 0)
    assert job.status is JobStatus.CANCELLED and job.remote_id == post.remote_id
    assert stub.cancelled == [post.remote_id] and post.status is JobStatus.CANCELLED
    assert status(pipe, waiter) is JobStatus.SUBMITTED and in_use(pipe) == 1, "the slot went to the waiter"
    assert pipe.poll(sid, 0) is None and stub.polls()[post.remote_id] == 0


def test_cancelling_a_set_cancels_its_posted_jobs_and_closes_its_batch_once(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=2)
    sid = new_set(pipe, 4)
    stub.plan(sid, 1, Outcome(polls_running=9)).plan(sid, 2, Outcome(polls_queued=9))
    pipe.submit(sid, 0)
    pipe.submit(sid, 1)
    waits(pipe, sid, 2)
    waits(pipe, sid, 3)
    pipe.poll(sid, 0)  # DONE: its slot posts job 2
    pipe.poll(sid, 1)
    assert [status(pipe, sid, i) for i in range(4)] == [JobStatus.DONE, JobStatus.RUNNING, JobStatus.SUBMITTED,
                                                        JobStatus.TRANSPILED]
    assert [j.index for j in pipe.store.request_cancel(sid)] == [1, 2, 3]
    pipe.cancel(sid)  # the cancel task, in a worker
    ids = {i: pipe.store.job(sid, i).remote_id for i in range(3)}
    assert stub.cancelled == [ids[1], ids[2]]
    [batch] = stub.batches_opened
    assert stub.batches_closed == [], "the batch is cancelled by the set's assembly, before it reads final"
    assert in_use(pipe) == 0
    polls_before = sum(stub.polls().values())
    for i in range(4):  # the chains' remaining steps find nothing to do
        pipe.submit(sid, i)
        assert pipe.poll(sid, i) is None
    assert sum(stub.polls().values()) == polls_before and len(stub.posts) == 3
    pipe.cancel(sid)  # a redelivered cancel task
    assert pipe.assemble(sid) is JobSetStatus.CANCELLED
    assert pipe.assemble(sid) is JobSetStatus.CANCELLED  # a redelivered assembly
    assert stub.batches_closed == [(batch, True)], "the batch is cancelled exactly once"
    results = job_set(pipe, sid).results(timeout=1, partial=True)
    assert results.get_counts("e0") == {"000": 64} and results.failed_experiments == [1, 2, 3]


def test_a_poll_of_a_job_cancelled_meanwhile_frees_its_slot_without_asking_the_service(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    sid, waiter = new_set(pipe), new_set(pipe)
    pipe.submit(sid, 0)
    waits(pipe, waiter)
    pipe.store.request_cancel(sid)  # the cancel task has not run yet
    assert pipe.poll(sid, 0) is None
    assert stub.polls() == {} and status(pipe, waiter) is JobStatus.SUBMITTED and in_use(pipe) == 1


def test_a_poll_between_the_cancel_flag_and_the_jobs_transition_cancels_the_remote_job(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    stub.plan(sid, 0, Outcome(polls_queued=9))
    pipe.submit(sid, 0)
    pipe.store.r.hset(keys.job_set(sid), "cancel_requested", "1")  # request_cancel got this far only
    assert pipe.poll(sid, 0) is None
    [post] = stub.posts
    assert status(pipe, sid) is JobStatus.CANCELLED and stub.cancelled == [post.remote_id]
    assert stub.polls() == {} and in_use(pipe) == 0
    assert pipe.store.job(sid, 0).error == "cancelled by user", "the same reason as request_cancel gives"


def test_a_job_begun_after_the_cancel_flag_ends_cancelled_by_user_like_the_others(make):
    """Whichever gets to a job first, the worker that read the flag or ``request_cancel``, the
    job reads the same (a re-run's history says why its attempt ended)."""
    stub = StubExecutor("aer_simulator", local=True)
    pipe = make(stub)
    sid = create_job_set(pipe.store, [basis_state(k) for k in range(2)], "aer_simulator", 1)
    pipe.store.r.hset(keys.job_set(sid), "cancel_requested", "1")  # request_cancel got this far only
    pipe.transpile(sid, 0)
    pipe.store.request_cancel(sid)
    assert [(j.status, j.error) for j in pipe.store.jobs(sid, 2)] == [(JobStatus.CANCELLED, "cancelled by user")] * 2
    assert stub.count("submit") == 0, "nothing of a cancelled set is run"


# ---------------------------------------------------------------------------- orphans
def test_steps_out_of_order_change_nothing_and_assembly_waits_for_every_job(make):
    """A job whose chain was cut short is alive in Redis: a stray poll does not end it, and the
    set's assembly waits for it (the reconciler re-sends its step, see tests/test_reconciler.py)."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 2)
    assert pipe.poll(sid, 0) is None  # its submit step never ran
    assert status(pipe, sid, 0) is JobStatus.TRANSPILED and stub.posts == []
    pipe.submit(sid, 1)
    pipe.poll(sid, 1)
    assert pipe.assemble(sid) is JobSetStatus.RUNNING, "job 0 is not final: the set is not assembled"
    assert pipe.store.job_set(sid).finished is None
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    assert [len(stub.posts_for(sid, i)) for i in range(2)] == [1, 1]


# ---------------------------------------------------------------------------- assembly
def test_assembly_keeps_global_order_with_placeholders_and_is_idempotent(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 5, per_job=2)
    stub.plan(sid, 0, Outcome(counts=[{"0x1": 64}, {"0x2": 64}], polls_running=2))
    stub.plan(sid, 1, Outcome(refuse=ExecutorError("too many circuits")))
    stub.plan(sid, 2, Outcome(counts=[{"0x4": 64}]))
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    results = job_set(pipe, sid).results(timeout=1, partial=True)
    combined = results.combine_results().to_dict()
    assert [r["header"]["name"] for r in combined["results"]] == ["e0", "e1", "e2", "e3", "e4"]
    assert [r["success"] for r in combined["results"]] == [True, True, False, False, True]
    assert "too many circuits" in combined["results"][2]["status"]
    assert not pipe.store.r.exists(keys.combined(sid)), "results stay per job: no value grows with the set"
    assert pipe.store.job_result(sid, 0) is not None
    finished = pipe.store.job_set(sid).finished
    assert pipe.assemble(sid) is JobSetStatus.ERROR  # the assemble task, redelivered
    assert pipe.store.job_set(sid).finished == finished
    assert [results.get_counts(k) for k in (0, 1, 4)] == [{"001": 64}, {"010": 64}, {"100": 64}]
    assert results.failed_experiments == [2, 3]
    with pytest.raises(JobSetFailedError, match="too many circuits"):
        results.get_counts("e3")
    with pytest.raises(JobSetFailedError, match="1 of 3 jobs"):
        job_set(pipe, sid).results(timeout=1)


def test_a_job_failing_on_the_service_keeps_its_message_and_frees_its_slot(make):
    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    sid = new_set(pipe, 2)
    stub.plan(sid, 0, Outcome(polls_running=1, end=JobStatus.ERROR, error="Error 8041: calibration lost"))
    pipe.submit(sid, 0)
    waits(pipe, sid, 1)
    assert pipe.poll(sid, 0) is not None  # RUNNING
    assert pipe.poll(sid, 0) is None
    job = pipe.store.job(sid, 0)
    assert job.status is JobStatus.ERROR and job.error == "Error 8041: calibration lost"
    assert status(pipe, sid, 1) is JobStatus.SUBMITTED, "its slot went to the waiting job at once"
    assert stub.count("fetch") == 0
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    js = job_set(pipe, sid)
    assert "calibration lost" in js.error_messages()
    results = js.results(timeout=1, partial=True)
    assert results.failed_experiments == [0] and results.get_counts("e1") == {"000": 64}


# ---------------------------------------------------------------------------- batches
def test_one_batch_per_set_even_when_its_first_posts_race(make):
    stub = remote_stub(batch_delay=0.15)  # a slow open_batch widens the race
    pipe = make(stub)
    sid, other = new_set(pipe, 2), new_set(pipe)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def post(i: int) -> None:
        start.wait()
        try:
            pipe.submit(sid, i)
        except RetryLater:  # the batch is being opened by the other: no worker waits for it
            retried.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    retried: list[int] = []
    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    for i in retried:  # their retries
        pipe.submit(sid, i)
    [batch] = stub.batches_opened
    assert [p.batch_id for p in stub.posts] == [batch, batch] and pipe.store.job_set(sid).batch_id == batch
    pipe.submit(other, 0)
    assert len(stub.batches_opened) == 2 and stub.posts[-1].batch_id == stub.batches_opened[1], "a batch per set"
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    assert stub.batches_closed == [(batch, False)]


# ---------------------------------------------------------------------------- lifecycle
def test_statuses_only_move_forward(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = create_job_set(pipe.store, [basis_state(5)], REMOTE)
    seen: list[JobStatus] = []

    def listener(job_set_id: str, job: int, status: JobStatus, fields: dict) -> None:
        if job_set_id == sid:
            seen.append(status)

    hooks.on("job_status", listener)
    try:
        stub.plan(sid, 0, Outcome(polls_queued=2, polls_running=2))
        pipe.transpile(sid, 0)
        isa = pipe.store.isa_qpy(sid, 0)
        pipe.transpile(sid, 0)  # redelivered: nothing is transpiled again
        assert status(pipe, sid) is JobStatus.TRANSPILED and pipe.store.isa_qpy(sid, 0) == isa
        pipe.submit(sid, 0)
        polled = []
        while pipe.poll(sid, 0) is not None:
            polled.append(status(pipe, sid))
        polled.append(status(pipe, sid))
        assert polled == [JobStatus.SUBMITTED, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.RUNNING,
                          JobStatus.DONE]
        pipe.transpile(sid, 0)
        pipe.submit(sid, 0)
        assert pipe.store.advance(sid, 0, JobStatus.RUNNING) == (JobStatus.DONE, False)
        assert pipe.store.advance(sid, 0, JobStatus.CANCELLED) == (JobStatus.DONE, False)
    finally:
        hooks.off("job_status", listener)
    order = [s for k, s in enumerate(seen) if k == 0 or seen[k - 1] is not s]
    assert order == [JobStatus.TRANSPILING, JobStatus.TRANSPILED, JobStatus.SUBMITTED, JobStatus.RUNNING,
                     JobStatus.DONE], "observers see the job move forward only"
    assert pipe.assemble(sid) is JobSetStatus.DONE
    assert job_set(pipe, sid).results(timeout=1).get_counts(0) == {"000": 64}


def test_each_status_is_announced_once(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe)
    stub.plan(sid, 0, Outcome(polls_running=3))
    seen: list[JobStatus] = []

    def listener(job_set_id: str, job: int, status: JobStatus, fields: dict) -> None:
        seen.append(status)

    hooks.on("job_status", listener)
    try:
        assert drive(pipe, sid) == [JobSetStatus.DONE]
    finally:
        hooks.off("job_status", listener)
    assert seen == [JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.DONE]


def test_a_local_job_runs_inside_its_transpile_task_with_no_slot_and_no_poll(make):
    stub = StubExecutor("aer_simulator", local=True)
    pipe = make(stub, max_pending=1)
    sent: list[str] = []
    pipe.send_assemble = sent.append
    sid = create_job_set(pipe.store, [basis_state(k % 8, name=f"e{k}") for k in range(3)], "aer_simulator", 2)
    stub.plan(sid, 1, Outcome(end=JobStatus.ERROR, error="out of memory"))
    pipe.transpile(sid, 0)
    assert status(pipe, sid, 0) is JobStatus.DONE, "begun, so run to its end: no submit message, no poll step"
    assert status(pipe, sid, 1) is JobStatus.QUEUED and sent == []
    pipe.transpile(sid, 1)
    assert sent == [sid], "the move that made the set's last job final sends its assembly"
    pipe.transpile(sid, 1)
    pipe.submit(sid, 1)
    assert sent == [sid], "a redelivered step sends no second assembly"
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    assert pipe.store.job(sid, 1).error == "simulation failed: ExecutorError: out of memory"
    assert stub.count("poll") == 0 and stub.posts == [] and stub.count("open_batch") == 0
    assert pipe.store.slots.in_use("aer_simulator") == 0
    results = job_set(pipe, sid).results(timeout=1, partial=True)
    assert results.get_counts("e0") == {"000": 64} and results.failed_experiments == [2]


def ghz() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3, name="ghz")
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure_all(add_bits=False)
    return qc


def test_transpilation_targets_the_executors_backend(make):
    stub = StubExecutor("aer_simulator", target=FakeManilaV2())
    pipe = make(stub)
    sid = create_job_set(pipe.store, [ghz()], "aer_simulator")
    pipe.transpile(sid, 0)
    assert status(pipe, sid) is JobStatus.TRANSPILED
    [isa] = codec.circuits_from_qpy(pipe.store.isa_qpy(sid, 0))
    ops = {inst.operation.name for inst in isa.data} - {"barrier"}
    assert ops <= set(FakeManilaV2().target.operation_names), f"{ops} is not native to the stub's device"


def test_racing_assemblies_finish_the_set_once_and_announce_it_once(make):
    """A re-sent assembly may read the statuses while another assembly finishes the set: the
    first to finish wins, the late one changes nothing and announces nothing (the set-latency
    histogram counts each set's end once because of it)."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 3)
    for i in range(3):
        pipe.submit(sid, i)
        while pipe.poll(sid, i) is not None:
            pass
    late = make(stub)  # another worker process
    original = late.store.job_statuses

    def job_statuses(s: str, n: int) -> list[JobStatus]:
        statuses = original(s, n)
        assert pipe.assemble(sid) is JobSetStatus.DONE  # meanwhile, the other assembly finishes the set
        return statuses

    late.store.job_statuses = job_statuses  # type: ignore[method-assign]
    finals: list[str] = []

    def listener(job_set_id: str, **_: Any) -> None:
        finals.append(job_set_id)

    hooks.on("job_set_final", listener)
    try:
        assert late.assemble(sid) is JobSetStatus.DONE
        assert pipe.assemble(sid) is JobSetStatus.DONE  # a redelivery
    finally:
        hooks.off("job_set_final", listener)
    assert finals == [sid]
    results = job_set(pipe, sid).results(timeout=1)
    assert [results.get_counts(k) for k in range(3)] == [{"000": 64}] * 3


# ---------------------------------------------------------------------------- batches that end
def test_a_post_into_a_closed_batch_goes_to_a_new_batch(make):
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 2)
    pipe.submit(sid, 0)
    [first] = stub.batches_opened
    stub.plan(sid, 1, Outcome(refuse=BatchClosedError("The session is closed.")))
    with pytest.raises(RetryLater, match="new batch"):
        pipe.submit(sid, 1)
    assert in_use(pipe) == 1 and pipe.store.job_set(sid).batch_id is None
    pipe.submit(sid, 1)  # the retry
    assert len(stub.batches_opened) == 2 and stub.posts_for(sid, 1)[-1].batch_id == stub.batches_opened[1] != first
    assert drive(pipe, sid) == [JobSetStatus.DONE] and len(stub.posts_for(sid, 1)) == 1


def test_a_job_failed_by_its_batchs_end_is_posted_again_as_a_new_attempt(make):
    """The batch reached its maximum lifetime: its queued jobs failed without running."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 2)
    why = "The batch b1 expired: its maximum time to live of 28800 s was reached before this job started"
    stub.plan(sid, 1, Outcome(end=JobStatus.ERROR, error=why, repost=True))
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    first, second = stub.posts_for(sid, 1)
    assert (first.tags[-1], second.tags[-1]) == (f"qjm:{sid}:1:a1", f"qjm:{sid}:1:a2")
    assert first.batch_id != second.batch_id, "the new attempt goes to a new batch"
    job = pipe.store.job(sid, 1)
    assert job.attempt == 2 and job.remote_id == second.remote_id and job.status is JobStatus.DONE
    assert [(h["attempt"], h["remote_id"], h["error"]) for h in job.history] == [(1, first.remote_id, why)]
    assert len(stub.posts_for(sid, 0)) == 1 and in_use(pipe) == 0


def test_a_set_finished_with_one_combined_value_still_reads(make):
    """Sets finished before results were kept per job hold one combined value: ``get_counts``,
    ``combine_results`` and ``primitive_result`` read it."""
    stub = remote_stub()
    pipe = make(stub)
    sid = new_set(pipe, 3, per_job=2)
    stub.plan(sid, 0, Outcome(counts=[{"0x1": 64}, {"0x2": 64}]))
    stub.plan(sid, 1, Outcome(counts=[{"0x4": 64}]))
    assert drive(pipe, sid) == [JobSetStatus.DONE]
    records = [rec for i in range(2) for rec in pipe.store.job_result(sid, i)]
    pipe.store.r.set(keys.combined(sid), codec.dumps({"results": records}))
    pipe.store.r.delete(keys.result(sid, 0), keys.result(sid, 1))
    results = job_set(pipe, sid).results(timeout=1)
    assert [results.get_counts(k) for k in range(3)] == [{"001": 64}, {"010": 64}, {"100": 64}]
    pr = results.primitive_result()
    assert [pub.data.meas.get_counts() for pub in pr] == [{"001": 64}, {"010": 64}, {"100": 64}]
    assert results.combine_results().get_counts(2) == {"100": 64}


def test_a_large_sets_job_messages_are_sent_once_whatever_is_redelivered(make, monkeypatch):
    pipe = make(StubExecutor("aer_simulator", local=True))
    sid = create_job_set(pipe.store, [basis_state(k % 8, name=f"e{k}") for k in range(40)], "aer_simulator")
    sent: list[tuple[str, int, bool, int]] = []
    monkeypatch.setattr(dispatch, "send_jobs", lambda cfg, s, n, local, per: sent.append((s, n, local, per)))
    pipe.send_jobs(sid, 40, True, 4)
    pipe.send_jobs(sid, 40, True, 4)  # the send_jobs task redelivered
    assert sent == [(sid, 40, True, 4)]


def test_near_its_expected_end_one_poll_task_asks_until_the_job_ends(make):
    """With a track record, the pauses around the expected end are waited in the task: the job's
    end is seen without a Celery round trip between two polls. Without one, a task asks once."""
    for track_record in (False, True):
        stub = remote_stub()
        pipe = make(stub)
        if track_record:
            del pipe.store.durations.estimate  # the fixture's "no track record" override
            for _ in range(5):
                pipe.store.durations.record(REMOTE, 0.05)
        sid = new_set(pipe, 1, prefix=f"t{track_record}")
        stub.plan(sid, 0, Outcome(polls_running=3))
        pipe.submit(sid, 0)
        [post] = stub.posts_for(sid, 0)
        delay = pipe.poll(sid, 0)
        if track_record:
            assert delay is None and status(pipe, sid) is JobStatus.DONE
            assert stub.polls()[post.remote_id] == 4, "three RUNNING answers, then DONE, in one task"
        else:
            assert delay is not None and status(pipe, sid) is JobStatus.RUNNING
            assert stub.polls()[post.remote_id] == 1


def test_a_message_of_small_local_jobs_runs_each_once_even_when_redelivered(make):
    """Small local jobs share a message (``dispatch.jobs_per_message``): its task runs them one
    after another, each job moving on its own; a redelivery of the message after some of them
    finished runs only the rest."""
    stub = StubExecutor("aer_simulator", local=True)
    pipe = make(stub)
    sid = create_job_set(pipe.store, [basis_state(k, name=f"r{k}") for k in range(4)], "aer_simulator")
    pipe.transpile(sid, 0, count=2)
    assert [status(pipe, sid, i) for i in range(4)] == [JobStatus.DONE, JobStatus.DONE, JobStatus.QUEUED,
                                                          JobStatus.QUEUED]
    assert stub.count("submit") == 2
    pipe.transpile(sid, 0, count=4)  # e.g. the whole message redelivered after a worker died mid-run
    assert all(status(pipe, sid, i) is JobStatus.DONE for i in range(4))
    assert stub.count("submit") == 4, "jobs 0 and 1 were not run again"
    assert pipe.assemble(sid) is JobSetStatus.DONE


def test_how_many_jobs_share_a_message():
    cfg = Settings(redis_url="redis://localhost:6379/0", jobs_per_message=8)
    assert dispatch.jobs_per_message(cfg, [1] * 1000, 16, local=True) == 8
    assert dispatch.jobs_per_message(cfg, [1] * 1000, 16, local=False) == 1, "remote jobs: one message each"
    assert dispatch.jobs_per_message(cfg, [1] * 1000, None, local=True) == 1, "pubs: one message each"
    assert dispatch.jobs_per_message(cfg, [1] * 96, 16, local=True) == 3, "at least 32 messages per set"
    assert dispatch.jobs_per_message(cfg, [1] * 63, 16, local=True) == 1
    assert dispatch.jobs_per_message(cfg, [4] * 1000, 16, local=True) == 4, "16 circuits per message"
    assert dispatch.jobs_per_message(cfg, [100] * 1000, 16, local=True) == 1
    assert dispatch.jobs_per_message(cfg, [1] * 1000, 20_000, local=True) == 3, "65,536 shots per message"
    one = Settings(redis_url="redis://localhost:6379/0", jobs_per_message=1)
    assert dispatch.jobs_per_message(one, [1] * 1000, 16, local=True) == 1


def test_near_its_expected_end_a_pause_between_polls_runs_from_each_polls_start(make, monkeypatch):
    """A status check that itself takes time (a slow service, a busy worker) does not stretch the
    pause near a job's end: checks start a fine pause apart, or back to back when a check takes
    longer than the pause, never a check's time plus the pause. What is checked is the pause the
    loop asks for, not the time between checks, so a loaded machine changes nothing."""
    import time
    import types

    stub = remote_stub()
    pipe = make(stub)
    del pipe.store.durations.estimate  # the fixture's "no track record" override
    for _ in range(5):
        pipe.store.durations.record(REMOTE, 0.05)  # steady 50 ms jobs: a 20 ms fine pause
    sid = new_set(pipe, 1)
    stub.plan(sid, 0, Outcome(polls_running=4))
    pipe.submit(sid, 0)
    pauses: list[float] = []  # those asked for after a check

    def sleep(seconds: float) -> None:
        if stub.count("poll"):
            pauses.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr("qjm.engine.pipeline.time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    check = stub.poll

    def slow_check(remote_id: str) -> Any:
        time.sleep(0.1)  # five times the fine pause
        return check(remote_id)

    monkeypatch.setattr(stub, "poll", slow_check)
    assert pipe.poll(sid, 0) is None and status(pipe, sid) is JobStatus.DONE
    assert stub.count("poll") == 5
    assert pauses and all(p == 0.0 for p in pauses), f"back to back, not check then pause: {pauses}"


def test_near_a_jobs_end_the_post_of_the_job_waiting_for_its_slot_is_made_ready(make, monkeypatch):
    """The task that polls a job near its expected end prepares the post of the job waiting
    longest for a slot; when the end comes, the hand-off posts exactly that, without loading the
    waiting job's circuits again."""
    import dataclasses

    stub = remote_stub()
    pipe = make(stub, max_pending=1)
    del pipe.store.durations.estimate  # the fixture's "no track record" override
    for _ in range(5):
        pipe.store.durations.record(REMOTE, 0.05)
    x, w = new_set(pipe, prefix="x"), new_set(pipe, prefix="w")
    stub.plan(x, 0, Outcome(polls_running=3))
    pipe.submit(x, 0)
    waits(pipe, w)
    readied: list[str] = []
    monkeypatch.setattr(stub, "ready_to_post", lambda work: readied.append(work.pubs[0].circuit.name)
                        or dataclasses.replace(work, prepared="made ready"))
    loads: list[tuple[str, int]] = []
    load_work = pipe.remote.load_work
    monkeypatch.setattr(pipe.remote, "load_work", lambda rec, i, quiet=False: loads.append((rec.id, i))
                        or load_work(rec, i, quiet))
    assert pipe.poll(x, 0) is None and status(pipe, x) is JobStatus.DONE
    [post] = stub.posts_for(w, 0)
    assert readied == ["w0"], "made ready once, however many polls came near the end"
    assert post.work.prepared == "made ready" and loads.count((w, 0)) == 1, loads
    assert status(pipe, w) is JobStatus.SUBMITTED
