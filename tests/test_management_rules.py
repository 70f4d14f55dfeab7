"""Management's rules, checked in milliseconds on a real Redis: the listing indexes, the tag rules,
the transient-failure table, and the local retry rule as the reconciler applies it (a scripted
executor, ``qjm.ops.testing.StubExecutor``). End-to-end tests with workers are in
``tests/test_management.py`` and ``tests/test_ibm_management.py``."""

from __future__ import annotations

import time

import pytest

from qjm import InvalidInputError, JobSetStatus, JobStatus
from qjm.client import tags
from qjm.client.deletion import delete_job_set
from qjm.client.job_set import ManagedJobSet
from qjm.client.listing import job_sets
from qjm.config import Settings
from qjm.emulator import records as service
from qjm.emulator.faults import CODE_MESSAGES, Faults
from qjm.engine import retries
from qjm.engine.pipeline import Pipeline
from qjm.engine.reconciler import MAX_RESENDS, Reconciler
from qjm.formats import validation
from qjm.lifecycle import Step
from qjm.ops.testing import StubExecutor, create_job_set
from qjm.store import Store, keys

from .circuits import basis_state
from .procs import RedisServer

GRACE = 30.0


@pytest.fixture
def store(server: RedisServer) -> Store:
    server.client().flushdb()
    return Store(cfg=Settings(redis_url=server.url))


def new_set(store: Store, backend: str = "aer_simulator", name: str | None = None,
            labels: list[str] | None = None) -> str:
    sid = create_job_set(store, [basis_state(1)], backend, name=name)
    if labels:
        store.relabel(sid, tags=labels)
    return sid


# ---------------------------------------------------------------- listing
def test_listing_filters_newest_first_and_limit(store):
    a = new_set(store, name="sweep", labels=["x", "y"])
    b = new_set(store, backend="fake_manila", name="sweep", labels=["x"])
    c = new_set(store, name="other", labels=["y"])
    cfg = store.cfg
    ids = lambda **kw: [js.job_set_id() for js in job_sets(store, cfg, **kw)]  # noqa: E731
    assert ids() == [c, b, a]
    assert ids(name="sweep") == [b, a]
    assert ids(tags=["x", "y"]) == [a]
    assert ids(tags=["y"], limit=1) == [c]
    assert ids(backend="fake_manila") == [b]
    assert ids(status="running") == [c, b, a] and ids(status=JobSetStatus.DONE) == []
    assert ids(name="nobody") == [] and ids(limit=0) == []
    with pytest.raises(InvalidInputError, match="status must be one of"):
        ids(status="FINISHED")
    with pytest.raises(InvalidInputError, match="limit"):
        ids(limit=-1)
    with pytest.raises(InvalidInputError, match="list of strings"):
        ids(tags="x")


def test_rename_retag_and_status_move_a_set_between_indexes(store):
    sid = new_set(store, name="before", labels=["old"])
    js = ManagedJobSet(sid, store, store.cfg)
    js.update_name("after")
    js.update_tags(additional_tags=["new"], removal_tags=["old"])
    cfg = store.cfg
    assert [s.job_set_id() for s in job_sets(store, cfg, name="after", tags=["new"])] == [sid]
    assert job_sets(store, cfg, name="before") == [] and job_sets(store, cfg, tags=["old"]) == []
    store.index.set_status(store.job_set(sid), "DONE")
    assert [s.job_set_id() for s in job_sets(store, cfg, status="DONE")] == [sid]
    assert job_sets(store, cfg, status="RUNNING") == []


def test_expired_sets_leave_every_index_lazily(store):
    gone, kept = new_set(store, name="n", labels=["t"]), new_set(store, name="n", labels=["t"])
    store.r.delete(keys.job_set(gone))  # its keys expired ...
    store.r.zadd(keys.SETS_EXPIRY, {gone: time.time() - 1})  # ... at its expiry time
    assert [s.job_set_id() for s in job_sets(store, store.cfg, name="n", tags=["t"])] == [kept]
    indexes = [k for k in store.r.scan_iter(match="qjm:sets*") if store.r.type(k) == b"zset"]
    leftovers = [k for k in indexes if store.r.zscore(k, gone) is not None]
    assert leftovers == [] and store.r.hget(keys.SETS_ENTRIES, gone) is None


def test_the_reconciler_repairs_an_index_a_crash_left_behind(store):
    sid = new_set(store, name="crashy")
    store.r.hset(keys.job_set(sid), "status", "DONE")  # finished, but its index update was lost
    lost = new_set(store)
    store.index.remove(lost)  # created, but never listed
    store.r.zadd(keys.RUNNING, {lost: 1.0})
    assert store.index.repair(store.running_ids()) == 2
    assert [s.job_set_id() for s in job_sets(store, store.cfg, status="DONE")] == [sid]
    assert lost in [s.job_set_id() for s in job_sets(store, store.cfg, status="RUNNING")]


# ---------------------------------------------------------------- deletion
def test_writes_that_come_late_to_a_deleted_set_bring_nothing_of_it_back(store):
    """A task or the reconciler that read the set just before it was deleted writes just after:
    nothing of the set comes back (a hash without an expiry would be kept for ever)."""
    sid = new_set(store)
    delete_job_set(store, store.cfg, sid)
    store.set_job_fields(sid, 0, remote_id="late")
    store.steps.mark_startable(sid, 0, time.time())
    assert store.steps.resent(sid, 0, Step.TRANSPILE, bump_epoch=True) == 0
    assert not store.claim_jobs_sent(sid) and not store.claim_batch_close(sid)
    assert not store.set_batch(sid, "batch-late")
    store.note_scan_from(sid, 1)
    store.note_assemble_sent(sid, time.time())
    store.waiting_since(sid, 0)
    assert not store.steps.plan(sid, 0, Step.SUBMIT, "q")
    left = list(store.r.scan_iter(match=f"qjm:{{{sid}}}:*"))
    assert left == [keys.tombstone(sid).encode()] and store.r.ttl(left[0]) > 0


# ---------------------------------------------------------------- tags
def test_tag_rules_refuse_before_anything_is_written(store):
    sid = new_set(store, labels=["keep"])
    js = ManagedJobSet(sid, store, store.cfg)
    for bad, match in [({"additional_tags": ["qjm:mine"]}, "qjm's own"),
                       ({"removal_tags": [f"qjm:{sid}"]}, "qjm's own"),
                       ({"additional_tags": ["x" * (tags.SERVICE_MAX_TAG_LENGTH + 1)]}, "at most"),
                       ({"additional_tags": [f"t{k}" for k in range(tags.MAX_USER_TAGS)]}, "give at most"),
                       ({"replacement_tags": "a-string"}, "list of strings")]:
        with pytest.raises(InvalidInputError, match=match):
            js.update_tags(**bad)
    assert store.job_set(sid).tags == ["keep"]
    assert js.update_tags(replacement_tags=["a", "b"], additional_tags=["c"], removal_tags=["a"]) == ["b", "c"]
    with pytest.raises(InvalidInputError, match="qjm's own"):
        validation.check_tags(["qjm:x"])


def test_qjm_and_its_emulator_agree_on_the_service_tag_limits():
    assert (tags.SERVICE_MAX_TAGS, tags.SERVICE_MAX_TAG_LENGTH) == (service.MAX_JOB_TAGS, service.MAX_TAG_LENGTH)
    with pytest.raises(service.ServiceError) as too_many:
        service.check_tags([f"t{k}" for k in range(service.MAX_JOB_TAGS + 1)])
    with pytest.raises(service.ServiceError) as too_long:
        service.check_tags(["x" * (service.MAX_TAG_LENGTH + 1)])
    assert (too_many.value.code, too_long.value.code) == (1204, 1205)


# ---------------------------------------------------------------- transient failures
def test_the_transient_table():
    for code in retries.RETRY_CODES:
        assert retries.transient(f"Error code {code}; whatever", local=False)
    for code in retries.PERMANENT_EXAMPLES:
        assert not retries.transient(f"Error code {code}; whatever", local=False)
    assert not retries.transient("Emulated failure: no code", local=False)
    assert retries.transient(retries.lost_step("submit", 4), local=True)
    assert not retries.transient("transpilation failed: QiskitError: 'mystery'", local=True)
    assert not retries.transient("simulation failed: MemoryError", local=True)
    history = [{"kind": "retry"}, {"kind": "rerun"}, {"kind": "retry"}, {"kind": "repost"}]
    assert retries.retries_used(history) == 1
    assert retries.may_retry(2, history, "Error code 1010; x", local=False)
    assert not retries.may_retry(1, history, "Error code 1010; x", local=False)
    for bad in (-1, 1.5, True, retries.MAX_RETRIES + 1):
        with pytest.raises(InvalidInputError, match="max_retries"):
            validation.check_max_retries(bad)


def test_the_emulator_produces_each_kind_of_failure():
    codes = [*retries.RETRY_CODES, *retries.PERMANENT_EXAMPLES]
    faults = Faults(fail_every=1, fail_codes=codes)
    for seq, code in enumerate(codes, start=1):
        reason, got = faults.failure(seq)
        assert got == code and CODE_MESSAGES[code] in reason


def _lose_step_until_abandoned(pipe: Pipeline, rec: Reconciler, sid: str, start: float,
                               step: Step = Step.SUBMIT) -> float:
    """The step's worker dies every time: the reconciler re-sends it until it gives up."""
    now = start
    for _ in range(MAX_RESENDS + 1):
        pipe.store.steps.started(sid, 0, step, node="dead@host")
        rec.reconcile(now)
        now += 2 * GRACE
        rec.reconcile(now)
    return now


def test_a_local_job_whose_worker_keeps_dying_gets_its_retries(server):
    server.client().flushdb()
    stub = StubExecutor("stub-local", local=True)
    cfg = Settings(redis_url=server.url, reconcile_grace=GRACE)
    pipe = Pipeline(Store(cfg=cfg), cfg, executor_for=lambda name: stub)
    rec = Reconciler(pipe, node="reconciler", resend=lambda *a: None, assemble=lambda sid: None,
                     queue_length=lambda queue: 0)
    sid = create_job_set(pipe.store, [basis_state(1)], "stub-local")
    pipe.store.r.hset(keys.job_set(sid), "max_retries", 1)
    # A local job is transpiled and simulated by one task (Pipeline._transpile): its worker dies.
    now = _lose_step_until_abandoned(pipe, rec, sid, time.time(), Step.TRANSPILE)
    job = pipe.store.job(sid, 0)
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 2)
    assert job.history[0]["kind"] == "retry" and "transpile step was lost" in job.history[0]["error"]
    _lose_step_until_abandoned(pipe, rec, sid, now, Step.TRANSPILE)
    job = pipe.store.job(sid, 0)
    assert (job.status, job.attempt) == (JobStatus.ERROR, 2)  # its one retry is spent
