"""``qjm metrics``: Prometheus metrics read from real Redis, latency recorded by a real ``qjm worker``."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from qjm import JobManager, JobSetStatus
from qjm.config import Settings
from qjm.lifecycle import Step
from qjm.ops import metrics as qm
from qjm.store import JobSetRecord, Store, new_job_set_id

from .circuits import basis_state, untranslatable
from .ops_fixtures import QJM, Proc, env_for, http_get, qjm_worker
from .procs import RedisServer, free_port, wait_for


@pytest.fixture(scope="module")
def stack():
    """Redis, one ``qjm worker`` (which records latency) and ``qjm metrics`` on a free port."""
    redis_proc = RedisServer().start()
    started: list[Proc] = []
    try:
        started.append(qjm_worker(redis_proc.url, "metrics"))
        port = free_port()
        server = Proc([QJM, "metrics", "--port", str(port), "--host", "127.0.0.1"], env_for(redis_proc.url), "metrics")
        started.append(server)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: http_get(url)[0] == 200, 180, "qjm metrics to answer", interval=0.2)
        yield redis_proc, url
    finally:
        for p in reversed(started):
            p.stop()
        redis_proc.stop()


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(url)
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body) for s in fam.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_job_sets_jobs_and_latency(stack):
    redis_proc, url = stack
    assert value(samples(url), "qjm_up") == 1.0

    js = JobManager(redis_proc.url).run([basis_state(k) for k in range(5)], backend="aer_simulator",
                                        max_experiments_per_job=2, shots=16)
    assert js.wait(timeout=120) is JobSetStatus.DONE
    found = samples(url)
    assert value(found, "qjm_job_sets", state="DONE", backend="aer_simulator") == 1
    assert value(found, "qjm_job_sets", state="RUNNING", backend="aer_simulator") == 0
    # The worker observed each of the 3 jobs and the set once, from the set's submit time; a
    # worker process writes its jobs' observations within a second (``Histograms.observe_later``).
    def all_three() -> dict | None:
        now = samples(url)
        return now if value(now, "qjm_job_result_seconds_count", backend="aer_simulator") == 3 else None

    found = wait_for(all_three, 10, "the jobs' observations to be written")
    assert value(found, "qjm_job_result_seconds_count", backend="aer_simulator") == 3
    assert value(found, "qjm_job_result_seconds_bucket", backend="aer_simulator", le="+Inf") == 3
    assert value(found, "qjm_job_set_result_seconds_count", backend="aer_simulator") == 1
    elapsed = time.time() - js.record().created
    assert 0 < value(found, "qjm_job_set_result_seconds_sum", backend="aer_simulator") <= elapsed


def test_a_re_run_counts_each_run_of_the_set_and_each_job_result_once(stack):
    redis_proc, url = stack
    js = JobManager(redis_proc.url).run([basis_state(1), untranslatable()], backend="fake_quito",
                                        max_experiments_per_job=1, shots=16)
    assert js.wait(timeout=120) is JobSetStatus.ERROR

    def counts() -> tuple[float, float]:
        found = samples(url)
        return (value(found, "qjm_job_result_seconds_count", backend="fake_quito"),
                value(found, "qjm_job_set_result_seconds_count", backend="fake_quito"))

    wait_for(lambda: counts() == (1, 1), 30, "the first run to be counted")
    js.rerun_failed()
    assert js.wait(timeout=120) is JobSetStatus.ERROR  # the circuit fails to transpile again
    wait_for(lambda: counts() == (1, 2), 30, "the re-run's end to be counted, and no job twice")


def test_unfinished_sets_and_remote_slots(stack):
    """State no worker touches: a stored set that was never enqueued, and leased remote-job slots."""
    redis_proc, url = stack
    store = Store(cfg=Settings(redis_url=redis_proc.url))
    rec = JobSetRecord(id=new_job_set_id(), name="parked", backend="ibm_parked", tags=[], created=time.time(),
                       n_experiments=3, job_bounds=[(0, 2), (2, 3)], options={})
    store.create_job_set(rec, [b"", b""], ["a", "b", "c"], queue="qjm.cpu")
    assert store.slots.acquire("ibm_parked", "job-1", limit=3, lease=600)
    assert store.slots.acquire("ibm_parked", "job-2", limit=3, lease=600)
    assert store.slots.acquire("ibm_parked", "lapsed", limit=3, lease=-1)  # an expired lease is not pending
    found = samples(url)
    assert value(found, "qjm_job_sets", state="RUNNING", backend="ibm_parked") == 1
    assert value(found, "qjm_jobs", state="QUEUED", backend="ibm_parked") == 2
    assert value(found, "qjm_jobs", state="DONE", backend="ibm_parked") == 0
    assert value(found, "qjm_remote_jobs_pending", backend="ibm_parked") == 2
    assert value(found, "qjm_remote_jobs_pending_limit") == store.cfg.max_pending_jobs
    before = value(found, "qjm_reconciler_resent_total", step="transpile")
    store.steps.resent(rec.id, 0, Step.TRANSPILE, bump_epoch=False)  # as the reconciler counts a re-send
    assert value(samples(url), "qjm_reconciler_resent_total", step="transpile") == before + 1


def test_observations_land_in_their_buckets(stack):
    redis_proc, _ = stack
    store = Store(cfg=Settings(redis_url=redis_proc.url))
    qm.observe(store, qm.JOB_HISTOGRAM, "bucket_backend", 4.0)
    qm.observe(store, qm.JOB_HISTOGRAM, "bucket_backend", 100000.0)
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for fam in text_string_to_metric_families(generate_latest(qm.registry(store.cfg)).decode())
             for s in fam.samples}
    assert value(found, "qjm_job_result_seconds_count", backend="bucket_backend") == 2
    assert value(found, "qjm_job_result_seconds_sum", backend="bucket_backend") == 100004.0
    assert value(found, "qjm_job_result_seconds_bucket", backend="bucket_backend", le="2.0") == 0
    assert value(found, "qjm_job_result_seconds_bucket", backend="bucket_backend", le="5.0") == 1
    assert value(found, "qjm_job_result_seconds_bucket", backend="bucket_backend", le="86400.0") == 1
    assert value(found, "qjm_job_result_seconds_bucket", backend="bucket_backend", le="+Inf") == 2


def test_redis_down_is_a_metric_not_an_error():
    dead = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    text = generate_latest(qm.registry(dead)).decode()
    assert "qjm_up 0.0" in text and "qjm_job_sets" not in text
