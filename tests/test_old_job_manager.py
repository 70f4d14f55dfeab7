"""Code written for the old ``IBMQJobManager`` on qjm, through real Redis and real Celery workers
on local backends: equal views, one job cancelled, calls that wait as the old ones did, the old
signatures, Qiskit's ``JobStatus``, and the tutorial's own code run as a script. The same on the
emulated IBM service is in tests/test_ibm_old_job_manager.py."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.random import random_circuit
from qiskit.providers import JobStatus as QiskitJobStatus
from qiskit.quantum_info import Statevector
from qiskit.result import Result

from qjm import (
    InvalidInputError,
    JobManager,
    JobSetFailedError,
    JobSetStatus,
    JobSetTimeoutError,
    JobStatus,
    ResultNotAvailableError,
)
from qjm.lifecycle import JOB_CANCELLED_BY_USER

from .circuits import basis_state, expected, untranslatable
from .procs import ROOT, worker_env, worker_starter

SHOTS = 64


def _python(code: str, redis_url: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(redis_url), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


# ---------------------------------------------------------------------------- identity
def test_two_views_of_a_set_or_a_job_are_equal(jm):
    js = jm.run([basis_state(k, name=f"eq{k}") for k in range(4)], backend="aer_simulator", name="equal-views",
                shots=8, max_experiments_per_job=2)
    listed = jm.job_sets(name="equal-views")[0]
    again = jm.retrieve_job_set(js.job_set_id())
    assert listed == js and again == js and js in jm.job_sets() and len({js, listed, again}) == 1
    other = jm.run(basis_state(1), backend="aer_simulator", shots=8)
    assert other != js and js != js.job_set_id()
    assert js.jobs() == again.managed_jobs() and js.jobs()[0] != js.jobs()[1]
    assert {j: j.index for j in js.jobs()}[again.managed_jobs()[1]] == 1, "a job hashes by its set and index"
    assert js.wait(timeout=120) is JobSetStatus.DONE and other.wait(timeout=120) is JobSetStatus.DONE


# ---------------------------------------------------------------------------- one job cancelled
def test_a_job_cancelled_from_another_process_before_it_runs(server, monkeypatch):
    """No worker yet: job 1 is cancelled (by another process) while it waits; the worker that
    starts afterwards runs the others, never job 1."""
    server.client().flushdb()
    monkeypatch.setenv("QJM_REDIS_URL", server.url)
    jm = JobManager()
    js = jm.run([basis_state(k, name=f"c{k}") for k in range(6)], backend="aer_simulator", shots=SHOTS,
                max_experiments_per_job=2)
    # Nothing runs yet: the calls that wait say so, the ones told not to answer at once.
    with pytest.raises(JobSetTimeoutError, match="every job to have its id"):
        js.jobs(timeout=0.3)
    with pytest.raises(JobSetTimeoutError):
        js.error_messages(timeout=0.3)
    assert [j.job_id() for j in js.jobs(wait=False)] == [None] * 3 and js.error_messages(wait=False) is None
    code = ("from qjm import JobManager\n"
            f"js = JobManager().retrieve_job_set({js.job_set_id()!r})\n"
            "print(js.jobs(wait=False)[1].cancel(), js.managed_jobs()[1].cancel())\n")
    assert _python(code, server.url) == "True False"
    with worker_starter(server.url) as start:
        start()
        jobs = js.jobs(timeout=120)  # waits for every id: the cancelled job is final without one
        assert [(j.start_index, j.end_index) for j in jobs] == [(0, 1), (2, 3), (4, 5)]
        assert [j.job_id() is None for j in jobs] == [False, True, False]
        assert js.wait(timeout=120) is JobSetStatus.ERROR
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    assert "TRANSPILING" not in js.jobs()[1].time_per_step()[1], "job 1 never began"
    results = js.results(partial=True)
    assert [results.get_counts(k) for k in (0, 1, 4, 5)] == [{expected(k): SHOTS} for k in (0, 1, 4, 5)]
    for k in (2, 3):
        with pytest.raises(ResultNotAvailableError, match=re.escape(f"job index 1, job ID None: {JOB_CANCELLED_BY_USER}")):
            results.get_counts(k)
    report = js.report()
    assert "status: ERROR" in report and "Cancelled jobs: 1 (job index 1)" in js.report(detailed=False)
    detail = report.split("job index: 1")[1].split("job index: 2")[0]
    assert "status: CANCELLED" in detail and JOB_CANCELLED_BY_USER in detail
    assert js.error_messages() == f"Experiments 2-3, job index 1, job ID None: {JOB_CANCELLED_BY_USER}"


def _slow_then_known(k: int, n: int = 30) -> list[QuantumCircuit]:
    """``n - 1`` deep noisy circuits (a few seconds of simulation) and one whose outcome is known."""
    return [random_circuit(5, 10, measure=True, seed=100 * k + s) for s in range(n - 1)] + \
        [basis_state(k, n=5, name=f"known{k}")]


def test_a_local_job_cancelled_while_it_runs_ends_cancelled_and_the_others_finish(jm):
    circuits = [c for k in range(3) for c in _slow_then_known(k + 1)]
    js = jm.run(circuits, backend="fake_manila", shots=8192, max_experiments_per_job=30, optimization_level=1)
    # The old jobs(): back once every job has its id, which a local job gets when it starts running;
    # the last to start runs for seconds yet.
    jobs = [j for j in js.jobs(timeout=180) if j.status() == JobStatus.RUNNING]
    running = max(jobs, key=lambda j: j.time_per_step()[1]["RUNNING"])
    assert running.job_id() == f"local:{js.job_set_id()}:{running.index}"
    assert running.cancel() is True
    assert js.wait(timeout=240) is JobSetStatus.ERROR
    statuses = js.statuses()
    assert statuses.count(JobStatus.CANCELLED) == 1 and statuses.count(JobStatus.DONE) == 2
    assert statuses[running.index] == JobStatus.CANCELLED, "the job that ran when cancelled"
    assert running.status() is JobStatus.CANCELLED and running.error_message() == JOB_CANCELLED_BY_USER
    results = js.results(partial=True)
    for job in js.jobs():
        last = job.end_index
        if job.index == running.index:
            with pytest.raises(ResultNotAvailableError, match=f"job index {job.index}"):
                results.get_counts(last)
        else:
            counts = results.get_counts(last)
            assert max(counts, key=counts.get) == format(job.index + 1, "05b") and sum(counts.values()) == 8192
    assert results.failed_experiments == list(running.experiments)


# ---------------------------------------------------------------------------- calls that wait
def test_error_messages_and_jobs_wait_for_the_set_by_default(jm):
    circuits = [basis_state(k, name=f"w{k}") for k in range(4)] + [untranslatable("late")]
    js = jm.run(circuits, backend="aer_simulator", shots=SHOTS, max_experiments_per_job=2)
    message = js.error_messages()  # right after run(): waits, so the later failure is not missed
    assert message is not None and "Experiments 4-4, job index 2" in message and "late" in message
    assert js.status() is JobSetStatus.ERROR
    jobs = js.jobs()
    assert [(j.start_index, j.end_index, j.start, j.stop) for j in jobs] == [(0, 1, 0, 2), (2, 3, 2, 4), (4, 4, 4, 5)]
    assert all(j.job_id() for j in jobs[:2]) and jobs[2].job_id() is None  # failed before it had an id


def test_update_tags_without_arguments_is_refused(jm):
    js = jm.run(basis_state(1), backend="aer_simulator", job_tags=["keep"], shots=8)
    with pytest.raises(InvalidInputError, match="replacement_tags, additional_tags or removal_tags"):
        js.update_tags()
    assert js.update_tags(replacement_tags=[]) == [] and js.tags() == []
    with pytest.raises(InvalidInputError, match="qjm:"):
        js.update_tags(additional_tags=["qjm:mine"])  # qjm's reserved tags stay refused
    js.wait(timeout=120)


# ---------------------------------------------------------------------------- old signatures
def test_old_signatures_and_result_shapes(jm):
    circuits = [basis_state(k, name=f"s{k}") for k in (5, 2)]
    with pytest.warns(UserWarning, match="job_share_level has no meaning any more"):
        js = jm.run(circuits, backend="aer_simulator", shots=SHOTS, memory=True, job_share_level="project",
                    meas_level=2, meas_return="avg", init_qubits=True, seed_simulator=3)
    results = js.results(timeout=120, refresh=True)
    assert results.backend_name == "aer_simulator"
    assert results.data(0) == {"counts": {"0x5": SHOTS}, "memory": ["0x5"] * SHOTS}
    assert results.data("s2") == results.combine_results().data(1)
    reference = Result.from_dict({"backend_name": "x", "backend_version": "", "qobj_id": "", "job_id": "",
                                  "success": True, "results": [{"shots": SHOTS, "success": True,
                                                                "data": {"counts": {"0x2": SHOTS}}}]})
    assert results.data(1)["counts"] == reference.data(0)["counts"]
    with pytest.raises(ResultNotAvailableError, match="measured circuits.*Statevector"):
        results.get_statevector(0)
    with pytest.raises(ResultNotAvailableError, match="measured circuits.*Operator"):
        results.get_unitary(0)
    assert [j.index for j in js.managed_jobs()] == [0]
    for bad, why in [({"meas_level": 1}, "meas_level=2"), ({"init_qubits": False}, "init_qubits"),
                     ({"rep_delay": 1e-4}, "rep_delay"), ({"qobj_header": {}}, "no Qobj"),
                     ({"schedule_los": []}, "pulse"), ({"noise_model": None}, "unknown argument 'noise_model'")]:
        with pytest.raises(InvalidInputError, match=why):
            jm.run(circuits, backend="aer_simulator", **bad)


def test_parameter_binds_bind_every_circuit_with_every_bind(jm):
    theta, phi = Parameter("θ"), Parameter("φ")
    vec = ParameterVector("v", 2)
    one = QuantumCircuit(2, name="one")
    one.rx(theta, 0)
    one.ry(phi, 1)
    one.measure_all(add_bits=False) if one.num_clbits else one.measure_all()
    two = QuantumCircuit(2, name="two")
    two.rx(vec[0], 0)
    two.rx(vec[1], 1)
    two.measure_all()
    binds = [{theta: 0.0, phi: np.pi, vec: [np.pi, 0.0]}, {theta: np.pi, "φ": 0.0, vec: [0.0, np.pi]},
             {theta: np.pi / 3, phi: 2.0, vec: [1.0, 2.5]}]
    js = jm.run([one, two], backend="aer_simulator", shots=4000, parameter_binds=binds, max_experiments_per_job=4)
    results = js.results(timeout=120)
    assert len(results) == 6 and len(js.jobs()) == 2, "2 circuits x 3 binds, circuit by circuit"
    assert results.get_counts(0) == {"10": 4000} and results.get_counts(1) == {"01": 4000}
    assert results.get_counts(3) == {"01": 4000} and results.get_counts(4) == {"10": 4000}
    for k, (circuit, bind) in {2: (one, binds[2]), 5: (two, binds[2])}.items():
        bound = circuit.remove_final_measurements(inplace=False).assign_parameters(
            {p: v for p, v in bind.items() if not isinstance(p, str) and
             (p in circuit.parameters or isinstance(p, ParameterVector) and p[0] in circuit.parameters)})
        probabilities = Statevector(bound).probabilities_dict()
        counts = results.get_counts(k)
        for outcome, p in probabilities.items():  # 4 sigma of shot noise
            assert abs(counts.get(outcome, 0) / 4000 - p) <= 4 * np.sqrt(p * (1 - p) / 4000) + 1e-9, (k, outcome)
    with pytest.raises(InvalidInputError, match=r"gives no value for \['φ'\]"):
        jm.run([one], backend="aer_simulator", parameter_binds=[{theta: 1.0}])
    with pytest.raises(InvalidInputError, match="names \\['ψ'\\], which no circuit has"):
        jm.run([one], backend="aer_simulator", parameter_binds=[{theta: 1.0, phi: 1.0, "ψ": 2.0}])
    with pytest.raises(InvalidInputError, match="non-empty list of dicts"):
        jm.run([one], backend="aer_simulator", parameter_binds={theta: 1.0})
    with pytest.raises(InvalidInputError, match="Estimator"):
        jm.run([one], backend="aer_simulator", primitive="estimator", parameter_binds=[{theta: 1.0, phi: 1.0}])


# ---------------------------------------------------------------------------- Qiskit's JobStatus
def test_statuses_compare_with_qiskits_job_status(jm):
    js = jm.run([basis_state(k) for k in range(4)], backend="aer_simulator", shots=8, max_experiments_per_job=2)
    js.wait(timeout=120)
    statuses = js.statuses()
    assert statuses == [QiskitJobStatus.DONE] * 2 and all(QiskitJobStatus.DONE == s for s in statuses)
    assert statuses[0] != QiskitJobStatus.ERROR and QiskitJobStatus.DONE in set(statuses)
    assert {QiskitJobStatus.DONE: "done"}[statuses[0]] == "done", "equal members hash alike"
    assert js.jobs()[0].status() == QiskitJobStatus.DONE
    assert JobStatus.SUBMITTED == QiskitJobStatus.QUEUED and JobStatus.QUEUED != QiskitJobStatus.QUEUED
    assert all(s != q for s in (JobStatus.QUEUED, JobStatus.TRANSPILING, JobStatus.TRANSPILED)
               for q in QiskitJobStatus)


# ---------------------------------------------------------------------------- the tutorial's code
def test_the_tutorials_job_manager_code_runs_unchanged(jm, redis_server):
    """tests/old_job_manager_script.py: the tutorial's and the reference's Job Manager code, its
    import of the manager the one line changed, run as a user would run it."""
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "old_job_manager_script.py")], cwd=ROOT,
                         env=worker_env(redis_server.url), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "This is the histogram data for experiment 1: {'101': 1024}" in lines, out.stdout
    assert "This is the histogram data for experiment 2: {'101': 1024}" in lines
    assert "Job0 submit failed!" not in lines and lines[-1] == "done", out.stdout


def test_an_old_style_failure_is_still_reported_as_the_old_one_did(jm):
    """results() on a set with a failed job raises unless partial=True (a deliberate difference)."""
    js = jm.run([basis_state(1), untranslatable()], backend="aer_simulator", shots=8, max_experiments_per_job=1)
    with pytest.raises(JobSetFailedError, match="results\\(partial=True\\)"):
        js.results(timeout=120)
    assert js.results(partial=True).get_counts(0) == {"001": 8}
