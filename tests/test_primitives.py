"""Primitives end to end: pubs in, ``PrimitiveResult`` out, on real workers and real simulators,
checked against Qiskit's own answers (``Statevector``; the local testing mode for noisy devices)."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.primitives import BitArray, PrimitiveResult
from qiskit.quantum_info import SparsePauliOp, Statevector

from qjm import JobManager, JobSetFailedError

from .circuits import basis_state, two_registers, untranslatable


def rotation() -> QuantumCircuit:
    """RY(theta) on qubit 0: P(1) = sin^2(theta / 2)."""
    qc = QuantumCircuit(1, name="ry")
    qc.ry(Parameter("theta"), 0)
    qc.measure_all()
    return qc


def ansatz(n: int = 2) -> QuantumCircuit:
    qc = QuantumCircuit(n, name=f"ansatz{n}")
    for q in range(n):
        qc.ry(Parameter(f"a{q}"), q)
    for q in range(n - 1):
        qc.cx(q, q + 1)
    for q in range(n):
        qc.rz(Parameter(f"b{q}"), q)
        qc.h(q)
    return qc


def exact(circuit: QuantumCircuit, observable: str, values: np.ndarray) -> float:
    bound = circuit.assign_parameters(dict(zip(circuit.parameters, values, strict=True)))
    return float(Statevector(bound).expectation_value(SparsePauliOp(observable)).real)


def error_bar(std: np.ndarray | float, precision: float) -> np.ndarray:
    """The standard error to test against: the reported one, but not below a quarter of the
    precision asked for (near +-1 the estimate of the spread itself shrinks towards 0)."""
    return np.maximum(std, precision / 4)


def p_one(bits: BitArray) -> np.ndarray:
    """Per parameter set, the fraction of shots that read 1."""
    return np.asarray(bits.bitcount(), dtype=float).mean(axis=-1)


def within_shot_noise(measured: np.ndarray, p: np.ndarray, shots: int, sigmas: float = 5.0) -> bool:
    sd = np.sqrt(np.maximum(p * (1 - p), 1e-4) / shots)
    return bool(np.all(np.abs(measured - p) <= sigmas * sd))


def test_sampler_sweep_and_per_pub_shots(jm):
    theta = np.linspace(0, np.pi, 7).reshape(7, 1)
    js = jm.run([(rotation(), theta), (rotation(), theta[:3], 300), basis_state(5)], backend="aer_simulator",
                shots=2000, seed_simulator=11)
    pr = js.results(timeout=180).primitive_result()
    assert isinstance(pr, PrimitiveResult) and len(pr) == 3
    sweep = pr[0].data.meas
    assert sweep.shape == (7,) and sweep.num_shots == 2000 and sweep.num_bits == 1
    assert within_shot_noise(p_one(sweep), np.sin(theta[:, 0] / 2) ** 2, 2000)
    assert pr[1].data.meas.shape == (3,) and pr[1].data.meas.num_shots == 300
    assert pr[0].data.meas.get_counts(6) == {"1": 2000}
    assert pr[2].data.meas.get_counts() == {"101": 2000}
    assert len(js.jobs()) == 2, "pubs with 2000 shots share a job; the 300-shot pub has its own"
    job, pos = js.job(2)
    assert (job.index, pos) == (0, 1)
    assert job.result()[pos].data.meas.get_counts() == {"101": 2000}
    assert js.job(1)[0].index == 1
    results = js.results()
    assert results.get_counts(2) == {"101": 2000}, "plain circuits in a pub set still give counts"
    with pytest.raises(JobSetFailedError, match=r"sweep of shape \(7,\)"):
        results.get_counts(0)


def test_estimator_matches_statevector_within_its_standard_errors(jm):
    circuit = ansatz(2)
    rng = np.random.default_rng(3)
    values = rng.uniform(-np.pi, np.pi, size=(4, 1, 4))
    observables = ["ZZ", "XI", SparsePauliOp(["IZ", "XX"], [0.5, 0.5])]
    js = jm.run([(circuit, observables, values), (circuit, "ZZ", values[0, 0], 0.02)], backend="aer_simulator",
                primitive="estimator", precision=0.03)
    pr = js.results(timeout=300).primitive_result()
    evs, stds = pr[0].data.evs, pr[0].data.stds
    assert evs.shape == stds.shape == (4, 3)
    labels = [[("ZZ", 1.0)], [("XI", 1.0)], [("IZ", 0.5), ("XX", 0.5)]]
    for r in range(4):
        for o, terms in enumerate(labels):
            want = sum(c * exact(circuit, label, values[r, 0]) for label, c in terms)
            assert abs(evs[r, o] - want) <= 5 * error_bar(stds[r, o], 0.03), (r, o, evs[r, o], want, stds[r, o])
    assert pr[1].data.evs.shape == ()
    assert abs(pr[1].data.evs - exact(circuit, "ZZ", values[0, 0])) <= 5 * error_bar(pr[1].data.stds, 0.02)
    assert 0 < stds.max() < 0.2


def test_estimator_takes_gates_outside_the_devices_basis_on_the_ideal_simulator(jm):
    """A bare RY(theta) (which aer_simulator's own target keeps and the executor Estimator
    cannot take) and a gate no device has, as Qiskit's primitives accept them."""
    ry = QuantumCircuit(1, name="ry")
    ry.ry(Parameter("theta"), 0)
    other = QuantumCircuit(2, name="rxx")
    other.rxx(Parameter("phi"), 0, 1)
    other.u(0.3, 0.2, 0.1, 1)
    theta = np.array([[0.0], [1.57], [np.pi]])
    js = jm.run([(ry, "Z", theta), (other, ["ZZ", "YI"], theta[:, None, :])], backend="aer_simulator",
                primitive="estimator", precision=0.02)
    pr = js.results(timeout=300).primitive_result()
    assert pr[0].data.evs.shape == (3,) and pr[1].data.evs.shape == (3, 2)
    for r in range(3):
        want = exact(ry, "Z", theta[r])
        assert abs(pr[0].data.evs[r] - want) <= 5 * error_bar(pr[0].data.stds[r], 0.02), (r, pr[0].data.evs[r], want)
        for o, label in enumerate(["ZZ", "YI"]):
            want = exact(other, label, theta[r])
            got, std = pr[1].data.evs[r, o], pr[1].data.stds[r, o]
            assert abs(got - want) <= 5 * error_bar(std, 0.02), (r, label, got, want)


def test_a_pub_larger_than_a_job_is_split_and_stitched_back(redis_server, worker, monkeypatch):
    monkeypatch.setenv("QJM_REDIS_URL", redis_server.url)
    monkeypatch.setenv("QJM_MAX_EXECUTIONS_PER_JOB", "3000")
    jm = JobManager()
    theta = np.full((10, 1), np.pi / 2)  # every row a fair coin: correlated slices would repeat bits
    theta[7, 0] = np.pi
    js = jm.run([(rotation(), theta)], backend="aer_simulator", shots=1000, seed_simulator=5)
    assert len(js.jobs()) == 4, "10 rows x 1000 shots under a 3000-execution cap: 3 rows per job"
    pr = js.results(timeout=180).primitive_result()
    bits = pr[0].data.meas
    assert bits.shape == (10,) and bits.num_shots == 1000
    assert bits.get_counts(7) == {"1": 1000}
    coins = [r for r in range(10) if r != 7]
    assert within_shot_noise(p_one(bits)[coins], np.full(9, 0.5), 1000)
    rows = bits.array.reshape(10, -1)
    assert not np.array_equal(rows[0], rows[3]), "slices in different jobs drew the same samples"


def test_estimator_pub_split_across_jobs(redis_server, worker, monkeypatch):
    monkeypatch.setenv("QJM_REDIS_URL", redis_server.url)
    monkeypatch.setenv("QJM_MAX_EXECUTIONS_PER_JOB", "1000")
    jm = JobManager()
    circuit = ansatz(2)
    values = np.random.default_rng(8).uniform(-np.pi, np.pi, size=(6, 4))
    js = jm.run([(circuit, "ZZ", values)], backend="aer_simulator", primitive="estimator", precision=0.05)
    assert len(js.jobs()) == 3, "6 parameter sets x 400 shots under a 1000 cap: 2 per job"
    data = js.results(timeout=300).primitive_result()[0].data
    assert data.evs.shape == (6,)
    want = np.array([exact(circuit, "ZZ", v) for v in values])
    assert np.all(np.abs(data.evs - want) <= 5 * error_bar(data.stds, 0.05))


def test_sampler_on_a_fake_device_matches_the_local_testing_mode(jm):
    """The reference: qiskit-ibm-runtime's executor Sampler in local testing mode, by hand."""
    from qiskit_ibm_runtime.executor_sampler import Sampler
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    qc = QuantumCircuit(2, name="x0")
    qc.x(0)
    qc.measure_all()
    shots = 4000
    pr = jm.run([(qc,)], backend="fake_manila", shots=shots).results(timeout=180).primitive_result()
    ours = pr[0].data.meas.get_counts()
    device = FakeManilaV2()
    ref = Sampler(mode=device, options={"default_shots": shots}).run([transpile(qc, device, optimization_level=2)])
    theirs = ref.result()[0].data.meas.get_counts()
    keys = set(ours) | set(theirs)
    tvd = 0.5 * sum(abs(ours.get(k, 0) - theirs.get(k, 0)) / shots for k in keys)
    # Two samples of 4000 shots of the same ~4-outcome distribution differ by ~0.01 in TVD.
    assert tvd < 0.04, (ours, theirs)
    assert 0.75 < ours.get("01", 0) / shots < 0.995, "X on qubit 0 reads 01 most of the time, not always"


def test_partial_results_name_the_pub_without_data(jm):
    js = jm.run([(rotation(), [[0.0]]), (untranslatable(),), basis_state(3)], backend="aer_simulator",
                shots=100, max_experiments_per_job=1)
    with pytest.raises(JobSetFailedError, match="did not complete"):
        js.results(timeout=180)
    results = js.results(partial=True)
    assert results.failed_experiments == [1]
    pr = results.primitive_result()
    assert pr[0].data.meas.get_counts(0) == {"0": 100}
    with pytest.raises(JobSetFailedError, match="Pub 1 has no data: .*transpil"):
        pr[1].data.meas.get_counts()
    assert pr[2].data.meas.get_counts() == {"011": 100}


def test_counts_sets_also_give_a_primitive_result(jm):
    js = jm.run([basis_state(6), two_registers()], backend="aer_simulator", shots=50, memory=True)
    results = js.results(timeout=180)
    pr = results.primitive_result()
    assert pr[0].data.meas.get_counts() == {"110": 50} == results.get_counts(0)
    assert pr[1].data.a.get_counts() == {"1": 50} and pr[1].data.b.get_counts() == {"10": 50}
    assert pr[1].metadata["shots"] == 50


def test_options_reach_the_primitive(jm):
    """Twirling needs ISA circuits of a real device's basis (the twirler knows rz/sx, not ry)."""
    js = jm.run([(rotation(), [[np.pi]])], backend="fake_manila", shots=400,
                options={"twirling": {"enable_measure": True, "num_randomizations": 4}})
    pr = js.results(timeout=180).primitive_result()
    assert pr[0].data.meas.get_counts(0).get("1", 0) > 300
    assert pr.metadata["options"]["twirling"]["enable_measure"] is True


def test_cli_writes_primitive_results_as_json(jm, redis_server, tmp_path):
    import json

    from .ops_fixtures import env_for, qjm

    circuit = ansatz(2)
    values = np.zeros((2, 4))
    sampler = jm.run([(rotation(), [[0.0], [np.pi]], 30)], backend="aer_simulator")
    estimator = jm.run([(circuit, ["ZZ", "XX"], values[:, None, :])], backend="aer_simulator", primitive="estimator")
    env = env_for(redis_server.url)
    for js in (sampler, estimator):
        out = tmp_path / f"{js.job_set_id()}.json"
        done = qjm("results", js.job_set_id(), "--out", str(out), "--timeout", "180", env=env)
        assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / f"{sampler.job_set_id()}.json").read_text())
    pub = doc["experiments"][0]
    assert pub["shape"] == [2] and pub["shots"] == 30
    assert [v["counts"]["meas"] for v in pub["values"]] == [{"0": 30}, {"1": 30}]
    doc = json.loads((tmp_path / f"{estimator.job_set_id()}.json").read_text())
    pub = doc["experiments"][0]
    assert pub["shape"] == [2, 2] and [v["index"] for v in pub["values"]] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    zz = exact(circuit, "ZZ", values[0])
    assert abs(pub["values"][0]["ev"] - zz) <= 5 * error_bar(pub["values"][0]["std"], 1 / 64)
