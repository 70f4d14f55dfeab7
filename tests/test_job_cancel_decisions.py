"""Cancelling one job of a set (``ManagedJob.cancel``), staged step by step in-process: the real
steps and a real Redis, a scripted service (``qjm.ops.testing.StubExecutor``), no Celery worker.
The same cancel through real workers, locally and on the emulated service, is in
tests/test_old_job_manager.py and tests/test_ibm_old_job_manager.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm import JobSetStatus, JobStatus, ManagedJobSet, ResultNotAvailableError
from qjm.config import Settings
from qjm.engine.pipeline import Pipeline
from qjm.lifecycle import JOB_CANCELLED_BY_USER
from qjm.ops.testing import Outcome, StubExecutor, create_job_set, drive
from qjm.store import Store, keys

from .circuits import basis_state
from .procs import RedisServer


@pytest.fixture
def pipe(server: RedisServer) -> Pipeline:
    """A pipeline on an empty Redis whose every backend is one scripted remote service."""
    server.client().flushdb()
    cfg = Settings(redis_url=server.url, max_pending_jobs=2, min_poll_interval=0.0, max_poll_interval=60)
    stub = StubExecutor("fake_manila", target=FakeManilaV2())
    p = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub, send_assemble=lambda sid: None)
    p.store.durations.estimate = lambda backend: None  # type: ignore[method-assign]
    p.store.durations.pace_estimate = lambda backend: None  # type: ignore[method-assign]
    p.remote.post_if_free = lambda *a: None  # type: ignore[method-assign]
    p.stub = stub  # type: ignore[attr-defined]
    return p


def new_set(pipe: Pipeline, n: int) -> str:
    sid = create_job_set(pipe.store, [basis_state(k, name=f"e{k}") for k in range(n)], "fake_manila", 1)
    for i in range(n):
        pipe.transpile(sid, i)
    return sid


def view(pipe: Pipeline, sid: str) -> ManagedJobSet:
    return ManagedJobSet(sid, pipe.store, pipe.cfg)


def test_cancelling_a_posted_job_cancels_it_on_the_service_and_the_rest_go_on(pipe):
    stub: StubExecutor = pipe.stub  # type: ignore[attr-defined]
    sid = new_set(pipe, 3)
    for i in range(3):
        stub.plan(sid, i, Outcome(polls_queued=2, counts=[{hex(i): 64}]))
    pipe.submit(sid, 0)
    pipe.submit(sid, 1)
    js = view(pipe, sid)
    assert js.managed_jobs()[1].cancel() is True  # what the user calls; sends the cancel task
    assert js.managed_jobs()[1].cancel() is False, "a final job is not cancelled twice"
    pipe.cancel(sid, [1])  # the cancel task, in a worker
    [post] = stub.posts_for(sid, 1)
    assert stub.cancelled == [post.remote_id]
    assert pipe.store.slots.in_use("fake_manila") == 1, "job 1's slot is free again; job 0 holds its own"
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    assert stub.cancelled == [post.remote_id], "the service is asked once: the job's poll knows it was"
    assert pipe.store.slots.in_use("fake_manila") == 0
    assert [b for _, b in stub.batches_closed] == [False], "the batch is closed, not cancelled: the set went on"
    results = js.results(partial=True)
    assert results.get_counts(0) == {"000": 64} and results.get_counts(2) == {"010": 64}, "each at its index"
    with pytest.raises(ResultNotAvailableError, match=re.escape(f"job index 1, job ID {post.remote_id}: {JOB_CANCELLED_BY_USER}")):
        results.get_counts(1)


def test_a_job_cancelled_while_it_waits_for_a_slot_is_never_posted(pipe):
    stub: StubExecutor = pipe.stub  # type: ignore[attr-defined]
    sid = new_set(pipe, 3)
    for i in range(2):
        stub.plan(sid, i, Outcome(polls_queued=1))
    pipe.submit(sid, 0)
    pipe.submit(sid, 1)
    with pytest.raises(Exception, match="slots on fake_manila are taken"):
        pipe.submit(sid, 2)  # queues for a slot
    assert view(pipe, sid).jobs(wait=False)[2].cancel()
    pipe.cancel(sid, [2])
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    assert stub.posts_for(sid, 2) == [] and stub.cancelled == []
    assert pipe.store.slots.in_use("fake_manila") == 0 and pipe.store.slots.first_waiting("fake_manila") is None


def test_a_poll_of_a_job_cancelled_alone_cancels_it_when_the_cancel_task_was_lost(pipe):
    stub: StubExecutor = pipe.stub  # type: ignore[attr-defined]
    sid = new_set(pipe, 2)
    stub.plan(sid, 0, Outcome(polls_queued=9))
    pipe.submit(sid, 0)
    assert view(pipe, sid).jobs(wait=False)[0].cancel()
    assert pipe.poll(sid, 0) is None  # the job's own poll loop, no cancel task
    [post] = stub.posts_for(sid, 0)
    assert stub.cancelled == [post.remote_id] and pipe.store.slots.in_use("fake_manila") == 0


def test_a_cancelled_job_is_not_reopened_by_a_repost_racing_the_cancel(pipe):
    """The poll reads the job, the service says its batch ended (a repost); the user cancels the
    job in between: the repost's new attempt is refused, so the job stays CANCELLED and the set
    ends; only the user's re-run reopens it."""
    stub: StubExecutor = pipe.stub  # type: ignore[attr-defined]
    sid = new_set(pipe, 2)
    stub.plan(sid, 0, Outcome(end=JobStatus.ERROR, error="The batch expired before this job started", repost=True))
    pipe.submit(sid, 0)
    real_poll = stub.poll

    def poll(remote_id: str) -> Any:
        state = real_poll(remote_id)
        view(pipe, sid).jobs(wait=False)[0].cancel()  # the user, while this poll is under way
        return state

    stub.poll = poll  # type: ignore[method-assign]
    pipe.poll(sid, 0)
    stub.poll = real_poll  # type: ignore[method-assign]
    job = pipe.store.job(sid, 0)
    assert job.status is JobStatus.CANCELLED and job.attempt == 1 and job.history == []
    assert len(stub.posts_for(sid, 0)) == 1, "never posted again"
    assert drive(pipe, sid) == [JobSetStatus.ERROR]
    assert int(pipe.store.r.hget(keys.job_set(sid), "jobs_left")) == 0
    # The user's re-run does reopen it.
    assert view(pipe, sid).rerun_failed()[0].index == 0
    assert pipe.store.job(sid, 0).attempt == 2 and pipe.store.job_set(sid).status is JobSetStatus.RUNNING
