"""The core pipeline end to end: real Redis, real Celery workers, real transpilation and simulation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from qiskit.circuit.random import random_circuit

from qjm import ExperimentNotFoundError, JobSetFailedError, JobSetStatus, JobStatus

from .circuits import basis_state, expected, two_registers, untranslatable
from .procs import ROOT, worker_env

SHOTS = 64


def test_known_circuits_come_back_at_their_indices(jm, worker):
    circuits = [basis_state(k % 8, name=f"c{k}") for k in range(23)]
    js = jm.run(circuits, backend="aer_simulator", name="order", max_experiments_per_job=5,
                job_tags=["t-order"], shots=SHOTS)
    results = js.results(timeout=120)
    assert results.success
    assert [len(j.experiments) for j in js.jobs()] == [5, 5, 5, 5, 3]
    assert js.statuses() == [JobStatus.DONE] * 5
    for k in range(23):
        assert results.get_counts(k) == {expected(k % 8): SHOTS}, k
    combined = results.combine_results()
    assert combined.get_counts(17) == {expected(17 % 8): SHOTS}
    assert js.error_messages() is None
    assert js.name() == "order" and js.tags() == ["t-order"]
    job, local = js.job(17)
    assert (job.index, local) == (3, 2) and job.status() is JobStatus.DONE
    assert job.result().get_counts(local) == {expected(17 % 8): SHOTS}
    # A worker at -l info keeps Qiskit's per-pass INFO lines out of its log (they cost 10-15 %).
    assert "Pass: " not in worker.output() and "succeeded in" in worker.output()


def test_noisy_fake_device_keeps_order_and_registers(jm):
    circuits = [basis_state(k, n=5, name=f"m{k}") for k in (3, 12, 30, 1)] + [two_registers()]
    js = jm.run(circuits, backend="fake_manila", max_experiments_per_job=2, shots=400, optimization_level=1)
    results = js.results(timeout=120)
    for pos, k in enumerate((3, 12, 30, 1)):
        counts = results.get_counts(pos)
        assert max(counts, key=counts.get) == format(k, "05b")
        assert sum(counts.values()) == 400
    regs = results.get_counts("two-regs")
    assert max(regs, key=regs.get) == "10 1"


def test_memory_and_seed(jm):
    circuits = [random_circuit(3, 3, measure=True, seed=s) for s in range(4)]
    a = jm.run(circuits, backend="aer_simulator", shots=32, memory=True, seed_simulator=7, max_experiments_per_job=3)
    b = jm.run(circuits, backend="aer_simulator", shots=32, memory=True, seed_simulator=7, max_experiments_per_job=3)
    ra, rb = a.results(timeout=120), b.results(timeout=120)
    for k in range(4):
        memory = ra.get_memory(k)
        assert len(memory) == 32
        assert ra.get_counts(k) == rb.get_counts(k)
        assert sum(1 for m in memory if m == memory[0]) == ra.get_counts(k)[memory[0]]
    plain = jm.run(circuits[:1], backend="aer_simulator", shots=8).results(timeout=120)
    with pytest.raises(JobSetFailedError, match="memory=True"):
        plain.get_memory(0)


def test_lookup_by_name_and_by_circuit(jm):
    circuits = [basis_state(k, name=f"named-{k}") for k in range(6)]
    submitted = jm.run(circuits, backend="aer_simulator", shots=SHOTS, max_experiments_per_job=4)
    results = submitted.results(timeout=120)
    assert results.get_counts("named-5") == {expected(5): SHOTS}
    assert results.get_counts(circuits[2]) == {expected(2): SHOTS}
    assert results.get_counts(-1) == {expected(5): SHOTS}
    with pytest.raises(ExperimentNotFoundError, match="no-such"):
        results.get_counts("no-such")
    with pytest.raises(ExperimentNotFoundError, match="out of range"):
        results.get_counts(6)
    # The job that ran an experiment, found the same ways (as the old Job Manager's job()).
    js = jm.retrieve_job_set(submitted.job_set_id(), provider=None, refresh=True)  # the seeds' call
    assert [(job.index, k) for job, k in (js.job("named-5"), js.job(circuits[2]), js.job(-1), js.job(1))] == \
        [(1, 1), (0, 2), (1, 1), (0, 1)]
    with pytest.raises(ExperimentNotFoundError, match="no-such"):
        js.job("no-such")
    twins = [basis_state(1, name="twin"), basis_state(2, name="twin")]
    with pytest.raises(ExperimentNotFoundError, match="2 experiments are named 'twin'"):
        jm.run(twins, backend="aer_simulator", shots=8).results(timeout=120).get_counts("twin")


def test_single_circuit_and_backend_object(jm):
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    js = jm.run(basis_state(6, n=5), backend=FakeManilaV2(), shots=200)
    assert js.backend_name() == "fake_manila"
    counts = js.results(timeout=120).get_counts(0)
    assert max(counts, key=counts.get) == "00110"


def test_failing_job_does_not_sink_the_set(jm):
    circuits = [basis_state(k, name=f"f{k}") for k in range(4)] + [untranslatable()] + \
               [basis_state(k, name=f"g{k}") for k in range(3)]
    js = jm.run(circuits, backend="aer_simulator", shots=SHOTS, max_experiments_per_job=4)
    assert js.wait(timeout=120) is JobSetStatus.ERROR
    assert js.statuses() == [JobStatus.DONE, JobStatus.ERROR]
    message = js.error_messages()
    assert "Experiments 4-7" in message and "mystery" in message and "transpilation failed" in message
    with pytest.raises(JobSetFailedError, match="Experiments 4-7"):
        js.results()
    partial = js.results(partial=True)
    assert not partial.success and partial.failed_experiments == [4, 5, 6, 7]
    assert partial.get_counts(3) == {expected(3): SHOTS}
    with pytest.raises(JobSetFailedError, match="mystery"):
        partial.get_counts(5)
    assert "error_message" in js.report() and "Failed jobs: 1" in js.report(detailed=False)


def test_cancel_stops_remaining_jobs(jm):
    circuits = [random_circuit(5, 6, measure=True, seed=s) for s in range(400)]
    js = jm.run(circuits, backend="fake_manila", shots=2048, max_experiments_per_job=10)
    js.cancel()
    assert js.wait(timeout=180) is JobSetStatus.CANCELLED
    statuses = js.statuses()
    assert set(statuses) <= {JobStatus.DONE, JobStatus.CANCELLED}
    assert statuses.count(JobStatus.CANCELLED) >= 30, statuses
    with pytest.raises(JobSetFailedError):
        js.results()
    partial = js.results(partial=True)
    done = [j for j in js.jobs() if j.status() is JobStatus.DONE]
    for j in done:
        assert sum(partial.get_counts(j.start).values()) == 2048
    assert "cancelled by user" in js.error_messages()


def _python(code: str, redis_url: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(redis_url), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_retrieve_from_another_process(jm, redis_server):
    circuits = [basis_state(k, name=f"r{k}") for k in range(7)]
    js = jm.run(circuits, backend="aer_simulator", name="shared", shots=SHOTS, max_experiments_per_job=3)
    code = (
        "import json, sys; from qjm import JobManager\n"
        f"js = JobManager().retrieve_job_set({js.job_set_id()!r})\n"
        "r = js.results(timeout=120)\n"
        "print(json.dumps([js.name(), [r.get_counts(k) for k in range(7)]]))\n"
    )
    name, counts = json.loads(_python(code, redis_server.url))
    assert name == "shared"
    assert counts == [{expected(k): SHOTS} for k in range(7)]


def test_set_survives_client_exiting_right_after_run(jm, redis_server):
    code = (
        "from qjm import JobManager; import sys; sys.path.insert(0, 'tests')\n"
        "from circuits import basis_state\n"
        "js = JobManager().run([basis_state(k, name=f'x{k}') for k in range(8)], backend='aer_simulator',"
        " shots=16, max_experiments_per_job=2, name='orphan')\n"
        "print(js.job_set_id())\n"
    )
    sid = _python(code, redis_server.url)
    js = jm.retrieve_job_set(sid)
    results = js.results(timeout=120)
    assert [results.get_counts(k) for k in range(8)] == [{expected(k): 16} for k in range(8)]


def test_job_sets_listing_and_report(jm):
    first = jm.run(basis_state(1), backend="aer_simulator", name="listing", job_tags=["a"], shots=8)
    second = jm.run(basis_state(2), backend="aer_simulator", name="listing", job_tags=["a", "b"], shots=8)
    jm.run(basis_state(3), backend="aer_simulator", name="other", job_tags=["b"], shots=8)
    ids = [js.job_set_id() for js in jm.job_sets(name="listing")]
    assert ids == [second.job_set_id(), first.job_set_id()]
    assert [js.job_set_id() for js in jm.job_sets(tags=["a", "b"])] == [second.job_set_id()]
    second.wait(timeout=120)
    report = jm.report(detailed=True)
    assert second.job_set_id() in report and "Detail report:" in report
