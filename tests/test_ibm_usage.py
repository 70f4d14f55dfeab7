"""QPU time through the real client against qjm's emulator: estimates, charges, budgets, HELD.

Real Redis, real Celery worker processes, the real qiskit-ibm-runtime client over HTTP; the
emulator charges every job by its own formula (``qjm.emulator.charges``), computed on its side.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from qiskit import QuantumCircuit

from qjm import JobManager, JobSetStatus, JobStatus, SetUsage
from qjm.emulator import DEFAULT_INSTANCE
from qjm.ops import cli, metrics
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess, wait_for
from qjm.store import keys

from .circuits import basis_state

BACKEND = "ibm_manila"


@pytest.fixture
def cluster(monkeypatch):
    """An emulator with the given knobs, a Redis and workers pointed at both."""
    started: list = []

    def start(workers: int = 1, worker_env: dict | None = None, emulator: EmulatorProcess | None = None,
              **emulator_opts):
        if emulator is None:
            emulator = EmulatorProcess(**{"job_seconds": 0.3, **emulator_opts}).wait_ready()
        started.append(emulator)
        redis = RedisProcess().start()
        started.append(redis)
        env = {"QISKIT_IBM_URL": emulator.url, **(worker_env or {})}
        procs = [WorkerProcess(redis.url, concurrency=2, **env) for _ in range(workers)]
        started.extend(procs)
        for w in procs:
            w.wait_ready()
        monkeypatch.setenv("QJM_REDIS_URL", redis.url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return emulator, redis, procs

    yield start
    for thing in reversed(started):
        thing.stop()


def circuits(n: int, width: int = 5) -> list[QuantumCircuit]:
    """Circuits of several depths: basis states, some with a ladder of CNOTs (longer shots)."""
    out = []
    for k in range(n):
        qc = basis_state(k % 2 ** width, n=width, name=f"c{k}")
        if k % 3 == 1:
            body = QuantumCircuit(width)
            for q in range(width - 1):
                body.cx(q, q + 1)
                body.cx(q, q + 1)
            qc = body.compose(qc)
            qc.name = f"c{k}"
        out.append(qc)
    return out


def charges(emulator: EmulatorProcess, job_set) -> dict[str, float]:
    """The emulator's charge of each of the set's remote jobs (its metrics, through the real client)."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    service = QiskitRuntimeService(channel="ibm_quantum_platform", token="any", instance=DEFAULT_INSTANCE,
                                   url=emulator.url,
                                   url_resolver=lambda url, instance, private_endpoint, channel: f"{url}/api/v1")
    return {j.job_id(): service.job(j.job_id()).usage() for j in job_set.jobs() if j.job_id()}


def set_emulator_limit(emulator: EmulatorProcess, seconds: float | None) -> None:
    request = urllib.request.Request(f"{emulator.url}/emulator/usage", json.dumps({"limit": seconds}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def test_estimates_and_charges_of_a_set(cluster, capsys):
    """Every job's estimate before its post is the emulator's charge (qjm computes it on its own
    side, from its transpiled circuits); each job's usage is its charge; once posted its
    estimate is the service's; the set's usage adds them up, per backend."""
    emulator, _, _ = cluster(estimate_error=0.2, seed=3)
    js = JobManager().run(circuits(9), backend=BACKEND, max_experiments_per_job=2, shots=200)
    assert js.wait(timeout=180) is JobSetStatus.DONE
    charged = charges(emulator, js)
    jobs = js.jobs()
    for job in jobs:
        rec = js._store.job(js.job_set_id(), job.index)
        assert rec.estimate == pytest.approx(charged[job.job_id()], rel=1e-6)
        assert job.usage() == pytest.approx(charged[job.job_id()], rel=1e-9)
        # Posted and polled: the service's estimate, off by up to 20 % (--estimate-error 0.2).
        assert job.usage_estimate() == pytest.approx(charged[job.job_id()], rel=0.2 + 1e-9)
    usage = js.usage()
    assert isinstance(usage, SetUsage)
    total = sum(charged.values())
    assert usage.consumed == pytest.approx(total, rel=1e-9)
    assert usage.reserved == pytest.approx(0.0, abs=1e-6) and usage.estimate == pytest.approx(total, rel=1e-9)
    assert usage.by_backend == {BACKEND: pytest.approx(total, rel=1e-9)}
    assert usage.budget is None and usage.held == 0
    assert emulator.stats()["quantum_seconds_total"] == pytest.approx(total, rel=1e-9)
    # The same figures from a shell and for Prometheus.
    assert cli.main(["usage", js.job_set_id()]) == 0
    shown = capsys.readouterr().out
    assert f"consumed : {total:.1f} s" in shown and f"{BACKEND}: {total:.1f} s" in shown
    assert cli.main(["usage"]) == 0
    assert f"consumed : {total:.1f} s (qjm's jobs)" in capsys.readouterr().out
    assert cli.main(["watch", js.job_set_id()]) == 0
    watched = capsys.readouterr().out
    assert "QPU time" in watched and f"{total:.1f} s consumed, {total:.1f} s estimated" in watched
    scraped = {(f.name, s.labels.get("backend")): s.value for f in text_string_to_metric_families(
        generate_latest(metrics.registry(js._store.cfg)).decode()) for s in f.samples}
    assert scraped[("qjm_qpu_seconds", BACKEND)] == pytest.approx(total, rel=1e-9)


def dominant(counts: dict[str, int]) -> str:
    return max(counts, key=counts.get)


def held_and_final(js, held: int) -> bool:
    statuses = js.statuses()
    return statuses.count(JobStatus.HELD) == held and all(s.final or s is JobStatus.HELD for s in statuses)


@pytest.mark.parametrize("estimate_error", [0.0, 0.2])
def test_a_set_stops_posting_at_its_budget(cluster, capsys, estimate_error):
    """A budget of about a third of the set's estimate: jobs post while consumed + reserved +
    their estimate fit, the rest wait unposted (HELD, the report says why), consumed never goes
    above the budget, the results so far are there; a lifted budget finishes the set, right."""
    emulator, _, _ = cluster(estimate_error=estimate_error, seed=5)
    n, budget = 9, 7.0
    js = JobManager().run([basis_state(k, n=5, name=f"k{k}") for k in range(n)], backend=BACKEND,
                          max_experiments_per_job=1, shots=200, max_qpu_seconds=budget)
    wait_for(lambda: held_and_final(js, n - 3), 120, "three jobs done and six held")
    usage = js.usage()
    assert usage.budget == budget and usage.held == n - 3
    assert usage.consumed <= budget and usage.reserved == pytest.approx(0.0, abs=1e-6)
    assert usage.estimate >= 2.5 * budget  # a budget of about a third of the estimate
    assert emulator.stats()["jobs_posted"] == 3
    assert js.status() is JobSetStatus.RUNNING  # held jobs keep the set from being final
    report = js.report()
    assert "Held jobs: 6" in report and "the set's budget" in report and "status: HELD" in report
    assert cli.main(["usage", js.job_set_id()]) == 0
    assert "held     : 6 job(s)" in capsys.readouterr().out
    partial = js.results(timeout=30, partial=True)
    jobs = js.jobs(timeout=30)  # held jobs are there, without an id: no wait brings their post about
    assert [job.job_id() is None for job in jobs].count(True) == n - 3
    done = [k for k in range(n) if jobs[k].status() is JobStatus.DONE]
    assert [dominant(partial.get_counts(k)) for k in done] == [format(k, "05b") for k in done]

    if estimate_error:  # from a shell, once
        assert cli.main(["budget", js.job_set_id(), "none"]) == 0
        assert "budget   : none" in capsys.readouterr().out
    else:
        assert js.update_budget(None).budget is None
    results = js.results(timeout=180)
    assert [dominant(results.get_counts(k)) for k in range(n)] == [format(k, "05b") for k in range(n)]
    usage = js.usage()
    assert usage.held == 0 and usage.consumed == pytest.approx(emulator.stats()["quantum_seconds_total"], rel=1e-9)
    assert emulator.stats()["jobs_posted"] == n


SUBMIT = """
import sys
from qjm import JobManager
from tests.circuits import basis_state
js = JobManager().run([basis_state(k, n=5, name=f"k{k}") for k in range(int(sys.argv[1]))], backend="ibm_manila",
                      max_experiments_per_job=1, shots=200)
print(js.job_set_id())
"""


@pytest.mark.fault
def test_two_sets_from_two_processes_share_one_instance_budget(cluster, monkeypatch):
    """QJM_QPU_SECONDS_PER_MONTH over every set, worker and host: two sets of six jobs posted by
    two client processes, four worker processes racing for the last seconds: the instance's
    charges stay within its budget, the jobs that did not fit wait HELD, and qjm's count of the
    month is the service's."""
    import subprocess
    import sys

    from qjm.ops.cluster import ROOT, process_env

    budget = 15.0  # about seven of the twelve 2.05 s jobs
    env = {"QJM_QPU_SECONDS_PER_MONTH": str(budget), "QISKIT_IBM_INSTANCE": DEFAULT_INSTANCE}
    emulator, redis, _ = cluster(workers=2, worker_env=env)
    clients = [subprocess.Popen([sys.executable, "-c", SUBMIT, "6"], cwd=ROOT, env=process_env(redis.url, **env),
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    ids = [c.communicate(timeout=120)[0].strip().splitlines()[-1] for c in clients]
    jm = JobManager()
    sets = [jm.retrieve_job_set(sid) for sid in ids]

    def settled() -> bool:
        statuses = [s for js in sets for s in js.statuses()]
        return JobStatus.HELD in statuses and all(s.final or s is JobStatus.HELD for s in statuses)

    wait_for(settled, 180, "the instance budget to hold the rest")
    month = jm.usage()
    stats = emulator.stats()
    assert stats["quantum_seconds_total"] <= budget
    assert month.budget == budget and month.consumed == pytest.approx(stats["quantum_seconds_total"], rel=1e-9)
    assert month.reserved == pytest.approx(0.0, abs=1e-6) and month.remaining < 2.1  # no job fits any more
    done = sum(js.statuses().count(JobStatus.DONE) for js in sets)
    assert done == stats["jobs_posted"] == stats["completed"] and done >= 6
    assert "instance's monthly budget" in sets[0].report() + sets[1].report()
    scraped = {f.name: s.value for f in text_string_to_metric_families(
        generate_latest(metrics.registry(jm.store.cfg)).decode()) for s in f.samples if not s.labels}
    assert scraped["qjm_qpu_budget_remaining_seconds"] == pytest.approx(month.remaining, abs=1e-6)
    # The service's own figures, as last asked (at most once a minute, shared through Redis).
    assert month.service is not None and 0 <= month.service["usage_consumed_seconds"] <= stats["quantum_seconds_total"]
    assert month.service_limit_reached is False


@pytest.mark.fault
def test_a_worker_killed_between_reserving_and_posting(cluster):
    """The worker reserved its jobs' QPU time and was posting them (its posts never reached the
    service) when it was SIGKILLed: another worker posts each attempt once, with the reservation
    it holds; at the end nothing is reserved and the instance's and the set's counts are what
    the service charged, once."""
    from .hold_posts import HoldPosts

    common = {"QISKIT_IBM_INSTANCE": DEFAULT_INSTANCE, "QJM_QPU_SECONDS_PER_MONTH": "100",
              "QJM_RECONCILE_GRACE": "3", "QJM_MAX_POLL_INTERVAL": "1", "QJM_VISIBILITY_TIMEOUT": "6"}
    emulator = EmulatorProcess(job_seconds=0.3).wait_ready()
    proxy = HoldPosts(emulator.url).start()
    survivor = None
    try:
        _, redis, (victim,) = cluster(worker_env={**common, "QISKIT_IBM_URL": proxy.url}, emulator=emulator)
        js = JobManager().run([basis_state(k, n=5, name=f"k{k}") for k in range(4)], backend=BACKEND,
                              max_experiments_per_job=1, shots=200)
        jm = JobManager()
        wait_for(lambda: proxy.held >= 2 and jm.usage().reserved > 0, 120, "posts to hang with their time reserved")
        victim.kill()
        assert jm.usage().reserved > 0 and jm.usage().consumed == 0
        survivor = WorkerProcess(redis.url, concurrency=2, **{**common, "QISKIT_IBM_URL": emulator.url}).wait_ready()
        results = js.results(timeout=180)
        assert [dominant(results.get_counts(k)) for k in range(4)] == [format(k, "05b") for k in range(4)]
        stats = emulator.stats()
        sid = js.job_set_id()
        assert {i: stats["posts_by_tag"].get(f"qjm:{sid}:{i}") for i in range(4)} == {i: 1 for i in range(4)}
        month, usage = jm.usage(), js.usage()
        assert month.reserved == pytest.approx(0.0, abs=1e-6) and usage.reserved == pytest.approx(0.0, abs=1e-6)
        assert month.consumed == pytest.approx(stats["quantum_seconds_total"], rel=1e-9)
        assert usage.consumed == pytest.approx(stats["quantum_seconds_total"], rel=1e-9)
        assert redis.client().hlen(keys.slots(BACKEND)) == 0
    finally:
        if survivor is not None:
            survivor.stop()
        proxy.stop()


@pytest.mark.fault
def test_the_service_out_of_time_is_waited_out(cluster):
    """The instance's allocation on the service runs out mid-set: once qjm's shared look at
    ``service.usage()`` says so, it posts nothing more (its jobs are HELD, saying why); when the
    allocation is raised the set goes on by itself and ends with every job done, none failed."""
    env = {"QJM_SERVICE_USAGE_SECONDS": "1", "QISKIT_IBM_INSTANCE": DEFAULT_INSTANCE}
    emulator, _, _ = cluster(worker_env=env, usage_limit=5.0)
    n = 10
    js = JobManager().run([basis_state(k, n=5, name=f"k{k}") for k in range(n)], backend=BACKEND,
                          max_experiments_per_job=1, shots=200)
    jm = JobManager()

    def seen_out_of_time() -> bool:
        return jm.usage().service_limit_reached and JobStatus.HELD in js.statuses()

    wait_for(seen_out_of_time, 120, "qjm to see the service's limit and hold jobs")
    import time

    time.sleep(2)  # a post that passed its check before qjm saw the limit lands meanwhile
    posted = emulator.stats()["jobs_posted"]
    time.sleep(5)  # several looks at the service's figures, and the held jobs' retries
    assert emulator.stats()["jobs_posted"] == posted < n  # nothing posted since
    wait_for(lambda: js.statuses().count(JobStatus.HELD) == n - posted, 60, "every unposted job to be held")
    assert "the service's usage limit" in js.report()
    set_emulator_limit(emulator, None)
    results = js.results(timeout=180)
    assert [dominant(results.get_counts(k)) for k in range(n)] == [format(k, "05b") for k in range(n)]
    stats = emulator.stats()
    assert stats["jobs_posted"] == n and stats["failed"] == 0
    assert js.usage().consumed == pytest.approx(stats["quantum_seconds_total"], rel=1e-9)
