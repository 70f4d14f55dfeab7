"""Job sets on IBM Quantum through the real qiskit-ibm-runtime client, against qjm's emulator.

Real Redis, real Celery worker processes, the real client over HTTP; only the service is
emulated (nothing here can reach IBM Quantum).
"""

from __future__ import annotations

import pytest

from qjm import JobManager, JobSetFailedError, JobSetStatus, JobStatus
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess, wait_for
from qjm.store import keys

from .circuits import basis_state

BACKEND = "ibm_manila"


@pytest.fixture
def cluster(monkeypatch):
    """Start an emulator with the given faults, a Redis and workers pointed at both."""
    started: list = []

    def start(workers: int = 1, worker_env: dict | None = None, **emulator_opts):
        emulator = EmulatorProcess(**{"job_seconds": 0.5, **emulator_opts}).wait_ready()
        started.append(emulator)
        redis = RedisProcess().start()
        started.append(redis)
        env = {"QISKIT_IBM_URL": emulator.url, **(worker_env or {})}
        procs = [WorkerProcess(redis.url, concurrency=2, **env) for _ in range(workers)]
        started.extend(procs)
        for w in procs:
            w.wait_ready()
        monkeypatch.setenv("QISKIT_IBM_URL", emulator.url)  # the client validates the backend
        monkeypatch.setenv("QJM_REDIS_URL", redis.url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return emulator, redis, procs

    yield start
    for thing in reversed(started):
        thing.stop()


def known(n: int) -> list:
    return [basis_state(k % 32, n=5, name=f"k{k}") for k in range(n)]


def dominant(counts: dict[str, int]) -> str:
    return max(counts, key=counts.get)


def assert_posted_once(emulator: EmulatorProcess, job_set, n_chunks: int) -> None:
    posts = emulator.stats()["posts_by_tag"]
    sid = job_set.job_set_id()
    assert {i: posts.get(f"qjm:{sid}:{i}", 0) for i in range(n_chunks)} == {i: 1 for i in range(n_chunks)}


def test_job_set_end_to_end_on_the_emulated_service(cluster):
    emulator, redis, _ = cluster(pending_limit=3)
    js = JobManager().run(known(11), backend=BACKEND, name="ibm", max_experiments_per_job=3, shots=300)
    results = js.results(timeout=180)
    assert [dominant(results.get_counts(k)) for k in range(11)] == [format(k, "05b") for k in range(11)]
    assert js.statuses() == [JobStatus.DONE] * 4
    assert all(j.job_id() and not j.job_id().startswith("local") for j in js.jobs())
    stats = emulator.stats()
    assert stats["max_pending"] <= 3
    assert stats["sessions_created"] == 1 and stats["sessions_closed"] == 1  # one batch, closed at the end
    assert_posted_once(emulator, js, 4)
    assert stats["posts_by_tag"][f"qjm:{js.job_set_id()}"] == 4
    assert redis.client().hlen(keys.slots(BACKEND)) == 0  # every slot given back


def test_pending_jobs_stay_within_the_limit_across_job_sets(cluster):
    emulator, redis, _ = cluster(workers=2, worker_env={"QJM_MAX_PENDING_JOBS": "2"}, job_seconds=0.6)
    jm = JobManager()
    sets = [jm.run(known(6), backend=BACKEND, max_experiments_per_job=1, shots=50) for _ in range(2)]
    for js in sets:
        assert js.wait(timeout=180) is JobSetStatus.DONE
    stats = emulator.stats()
    assert stats["max_pending"] == 2, stats["max_pending"]
    assert stats["refused_pending_limit"] == 0
    for js in sets:
        assert_posted_once(emulator, js, 6)
    assert redis.client().hlen(keys.slots(BACKEND)) == 0


def test_service_refusals_back_off_and_never_fail_the_set(cluster):
    # qjm believes 4 may be pending, the service allows 2: refusals (code 3458) must be retried.
    emulator, _, _ = cluster(worker_env={"QJM_MAX_PENDING_JOBS": "4"}, pending_limit=2)
    js = JobManager().run(known(8), backend=BACKEND, max_experiments_per_job=1, shots=50)
    assert js.wait(timeout=180) is JobSetStatus.DONE
    stats = emulator.stats()
    assert stats["refused_pending_limit"] > 0 and stats["max_pending"] <= 2
    assert_posted_once(emulator, js, 8)


def test_429_storms_and_5xx_answers_are_survived(cluster):
    emulator, _, _ = cluster(throttle=0.3, server_errors=0.2, seed=7)
    js = JobManager().run(known(6), backend=BACKEND, max_experiments_per_job=2, shots=100)
    results = js.results(timeout=300)
    assert [dominant(results.get_counts(k)) for k in range(6)] == [format(k, "05b") for k in range(6)]
    stats = emulator.stats()
    assert stats["throttled"] > 0 and stats["server_errors"] > 0
    assert_posted_once(emulator, js, 3)


def test_failed_remote_job_is_reported_with_partial_results(cluster):
    emulator, _, _ = cluster(fail_every=2)
    js = JobManager().run(known(4), backend=BACKEND, max_experiments_per_job=2, shots=100)
    assert js.wait(timeout=180) is JobSetStatus.ERROR
    statuses = js.statuses()
    assert sorted(statuses) == sorted([JobStatus.DONE, JobStatus.ERROR])
    bad = statuses.index(JobStatus.ERROR)
    message = js.error_messages()
    assert f"Experiments {2 * bad}-{2 * bad + 1}" in message and "Emulated failure" in message
    with pytest.raises(JobSetFailedError):
        js.results()
    partial = js.results(partial=True)
    good = 1 - bad
    assert dominant(partial.get_counts(2 * good)) == format(2 * good, "05b")
    assert partial.failed_experiments == [2 * bad, 2 * bad + 1]


def test_cancel_reaches_the_service(cluster):
    emulator, redis, _ = cluster(job_seconds=30)
    js = JobManager().run(known(6), backend=BACKEND, max_experiments_per_job=1, shots=50)
    wait_for(lambda: js.statuses().count(JobStatus.SUBMITTED) + js.statuses().count(JobStatus.RUNNING) >= 3, 60,
             "three jobs to be posted")
    js.cancel()
    assert js.wait(timeout=60) is JobSetStatus.CANCELLED
    assert set(js.statuses()) == {JobStatus.CANCELLED}
    wait_for(lambda: emulator.stats()["cancelled"] >= 3, 30, "the service to see the cancellations")
    stats = emulator.stats()
    assert stats["pending"] == 0 and stats["sessions_cancelled"] == 1
    assert stats["jobs_posted"] == 3  # the waiting chunks were never posted
    assert redis.client().hlen(keys.slots(BACKEND)) == 0


@pytest.mark.fault
def test_worker_killed_between_submit_and_poll(cluster):
    # Short visibility timeout so the dead worker's unacknowledged tasks come back quickly;
    # polls stay well below it.
    env = {"QJM_VISIBILITY_TIMEOUT": "6", "QJM_MAX_POLL_INTERVAL": "1", "QJM_MAX_PENDING_JOBS": "8"}
    emulator, _, (victim, survivor) = cluster(workers=2, worker_env=env, job_seconds=3)
    js = JobManager().run(known(12), backend=BACKEND, max_experiments_per_job=2, shots=100)
    wait_for(lambda: js.statuses().count(JobStatus.SUBMITTED) >= 3, 60, "jobs to be posted")
    victim.kill()  # SIGKILL to the whole worker: main process and pool
    results = js.results(timeout=240)
    assert [dominant(results.get_counts(k)) for k in range(12)] == [format(k % 32, "05b") for k in range(12)]
    assert_posted_once(emulator, js, 6)
    assert "ready." in survivor.output()


@pytest.mark.fault
def test_a_set_outlives_its_batch(cluster):
    """The batch reaches its maximum lifetime mid-set: its queued jobs fail and posts into it are
    refused; qjm opens a new batch and posts those jobs again, each as a new attempt, once."""
    env = {"QJM_MAX_PENDING_JOBS": "2", "QJM_RECONCILE_GRACE": "3"}
    emulator, redis, _ = cluster(worker_env=env, job_seconds=1.0, batch_ttl=1.5)
    js = JobManager().run(known(8), backend=BACKEND, max_experiments_per_job=1, shots=100)
    results = js.results(timeout=180)
    assert [dominant(results.get_counts(k)) for k in range(8)] == [format(k, "05b") for k in range(8)]
    stats = emulator.stats()
    assert stats["sessions_expired"] >= 1 and stats["sessions_created"] >= 2
    posts, sid = stats["posts_by_tag"], js.job_set_id()
    attempts = {i: redis.client().hget(keys.job(sid, i), "attempt") for i in range(8)}
    for i in range(8):
        n = int(attempts[i] or 1)
        assert posts.get(f"qjm:{sid}:{i}") == n, (i, n, posts.get(f"qjm:{sid}:{i}"))
        assert all(posts.get(f"qjm:{sid}:{i}:a{a}") == 1 for a in range(1, n + 1)), "one post per attempt"
    assert redis.client().hlen(keys.slots(BACKEND)) == 0


def test_primitive_pubs_through_the_emulated_service(cluster, monkeypatch):
    """Both primitives end to end through the real client: a Sampler sweep split over jobs and
    stitched back, and Estimator pubs (prepared in the CPU step) checked against Statevector."""
    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp, Statevector

    emulator, redis, _ = cluster(pending_limit=3)
    monkeypatch.setenv("QJM_MAX_EXECUTIONS_PER_JOB", "2000")
    theta = Parameter("theta")
    ry = QuantumCircuit(1, name="ry")
    ry.ry(theta, 0)
    ry.measure_all()
    values = np.array([[0.0], [np.pi], [0.0], [np.pi], [0.0]])
    sampler = JobManager().run([(ry, values)], backend=BACKEND, shots=1000, seed_simulator=4)
    assert len(sampler.jobs()) == 3, "5 rows x 1000 shots under a 2000 cap: 2 rows per job"
    bell = QuantumCircuit(2, name="bell")
    bell.h(0)
    bell.cx(0, 1)
    observables = ["ZZ", "XX", "ZI"]
    estimator = JobManager().run([(bell, observables)], backend=BACKEND, primitive="estimator", precision=0.025)
    bits = sampler.results(timeout=300).primitive_result()[0].data.meas
    assert bits.shape == (5,) and bits.num_shots == 1000
    ones = np.asarray(bits.bitcount(), dtype=float).mean(axis=-1)
    assert np.all(ones[[1, 3]] > 0.9) and np.all(ones[[0, 2, 4]] < 0.1), ones  # ibm_manila's noise
    data = estimator.results(timeout=300).primitive_result()[0].data
    exact = [Statevector(bell).expectation_value(SparsePauliOp(o)).real for o in observables]
    assert data.evs.shape == (3,)
    # Readout mitigation (the Estimator's default) leaves gate noise (about 0.01 here) and shot
    # noise of about the precision (1,600 shots, under the 2,000 cap above): over 40 pubs at 0.02
    # the spread was 0.007 to 0.021, so 0.15 is about 6 of it at 0.025. (At 0.05, ZI spread 0.06
    # and one pub in 40 missed 0.15: shot noise, not the model.)
    assert np.all(np.abs(data.evs - exact) < 0.15), (data.evs, exact)
    assert np.all(data.stds < 0.05), data.stds
    assert redis.client().exists(keys.prepared(estimator.job_set_id(), 0)), "prepared in the CPU step, not in the post"
    posts = emulator.stats()["posts_by_tag"]
    assert sum(posts.get(f"qjm:{sampler.job_set_id()}:{i}", 0) for i in range(3)) == 3
