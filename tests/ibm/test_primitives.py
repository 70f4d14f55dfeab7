"""Sampler and Estimator pubs on IBM Quantum: through the real qiskit-ibm-runtime client, against
the emulator, compared with Qiskit's own answers for the same pubs.

The references are what a user would check against: the exact ``Statevector`` expectation for an
Estimator on a circuit that noise barely touches, and the client's own local testing mode (the
same primitives run in process on ``fake_manila``, whose noise model the emulator's
``ibm_manila`` must use) everywhere else. Statistical bounds are 4 standard errors.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.primitives import BitArray, PrimitiveResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qjm.emulator import Emulator
from qjm.errors import ExecutorError, RetryLater
from qjm.executors.base import JobWork, Primitive, RunOptions, SubmitContext
from qjm.executors.ibm import IBMQuantumExecutor
from qjm.formats import outputs

BACKEND = "ibm_manila"
SIGMAS = 4.0


# ----- helpers -----
@pytest.fixture
def executor(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> IBMQuantumExecutor:
    use_emulator(emulator)
    return IBMQuantumExecutor(BACKEND)


@pytest.fixture(scope="module")
def fake() -> FakeManilaV2:
    return FakeManilaV2()


def ctx_for(set_id: str, job: int = 0) -> SubmitContext:
    return SubmitContext(job_set_id=set_id, job=job, tags=[f"qjm:{set_id}", f"qjm:{set_id}:{job}"])


def run_job(executor: IBMQuantumExecutor, work: JobWork, set_id: str) -> tuple[str, PrimitiveResult]:
    """Prepare (the CPU step), submit, wait, fetch: what the pipeline does with one job."""
    work = JobWork(work.pubs, work.options, executor.prepare(work))
    remote_id = executor.submit(work, ctx_for(set_id)).remote_id
    deadline = time.monotonic() + 120
    while not executor.poll(remote_id).status.final:
        assert time.monotonic() < deadline, f"job {remote_id} did not finish"
        time.sleep(0.1)
    for _ in range(20):
        try:
            return remote_id, executor.fetch(remote_id, work)
        except RetryLater:
            time.sleep(0.2)
    return remote_id, executor.fetch(remote_id, work)


def probability(bits: BitArray, outcome: str) -> float:
    return bits.get_counts().get(outcome, 0) / bits.num_shots


def assert_same_rate(got: BitArray, want: BitArray, outcome: str) -> None:
    """Two samples of one outcome agree within shot noise (a two-proportion bound)."""
    p, q = probability(got, outcome), probability(want, outcome)
    pooled = (p * got.num_shots + q * want.num_shots) / (got.num_shots + want.num_shots)
    sigma = math.sqrt(max(pooled * (1 - pooled), 1e-4) * (1 / got.num_shots + 1 / want.num_shots))
    assert abs(p - q) <= SIGMAS * sigma, f"P({outcome}) {p:.3f} vs reference {q:.3f} (sigma {sigma:.3f})"


def ry_bell(num_measured: bool = True) -> QuantumCircuit:
    """Ry(theta) then CX: P(11) = sin^2(theta/2), <ZZ> = 1, <XX> = sin(theta), <ZI> = cos(theta)."""
    theta = Parameter("theta")
    qc = QuantumCircuit(2, name="ry_bell")
    qc.ry(theta, 0)
    qc.cx(0, 1)
    if num_measured:
        qc.measure_all()
    return qc


def isa(circuit: QuantumCircuit, backend: Any) -> QuantumCircuit:
    return transpile(circuit, backend, optimization_level=1, seed_transpiler=11)


SWEEP = np.array([[0.0], [math.pi / 3], [math.pi / 2], [math.pi]])


# ----- Sampler -----
def test_sampler_sweeps_and_per_pub_shots_match_the_fake_device(executor: IBMQuantumExecutor, fake: FakeManilaV2) -> None:
    """A sweep comes back shaped like its parameter values, each job with its pubs' shots, and
    the emulated ibm_manila samples what the local fake_manila model does (AerSimulator.from_backend)."""
    from qiskit_aer import AerSimulator
    from qiskit_aer.primitives import SamplerV2 as AerSampler

    backend = executor.backend()
    sweep = isa(ry_bell(), backend)
    flip = QuantumCircuit(1, 1, name="x0")
    flip.x(0)
    flip.measure(0, 0)
    flip = transpile(flip, backend, initial_layout=[0], optimization_level=1)
    big = JobWork([SamplerPub.coerce((sweep, SWEEP), 4000), SamplerPub.coerce(flip, 4000)],
                  RunOptions(shots=4000, pubs=True))
    small = JobWork([SamplerPub.coerce((sweep, SWEEP[:2]), 100)], RunOptions(shots=100, pubs=True))
    assert executor.prepare(big) is None, "a plain Sampler job has nothing to prepare ahead"

    _, result = run_job(executor, big, "samp")
    _, few = run_job(executor, small, "samp-small")
    assert [type(pub).__name__ for pub in result] == ["SamplerPubResult", "SamplerPubResult"]
    assert result[0].data.meas.shape == (4,) and result[0].data.meas.num_shots == 4000
    assert result[1].data.c.shape == () and result[1].data.c.num_shots == 4000
    assert few[0].data.meas.shape == (2,) and few[0].data.meas.num_shots == 100

    local = AerSampler.from_backend(AerSimulator.from_backend(fake), seed=5)
    reference = local.run([(sweep, SWEEP, 20000), (flip, None, 20000)]).result()
    for k in range(len(SWEEP)):
        assert_same_rate(result[0].data.meas[k], reference[0].data.meas[k], "11")
    # X on qubit 0 reads 1 with p ~ 0.964 under this model and ~ 0.944 under the fake device's
    # own (``FakeManilaV2().run``): the bound here (~0.014) tells the two apart.
    assert_same_rate(result[1].data.c, reference[1].data.c, "1")


def test_twirled_sampler_runs_samplex_items_like_the_local_testing_mode(emulator: Emulator, executor: IBMQuantumExecutor,
                                                                       fake: FakeManilaV2) -> None:
    """With twirling the Sampler posts samplex items: prepared in the CPU step, run by the
    emulator, and the client's post-processing undoes the measurement flips."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    options = {"twirling": {"enable_gates": True, "enable_measure": True}}
    sweep = isa(ry_bell(), executor.backend())
    work = JobWork([SamplerPub.coerce((sweep, SWEEP), 2000)],
                   RunOptions(shots=2000, pubs=True, primitive_options=options))
    assert executor.prepare(work) is not None, "building samplexes is CPU work for the transpile step"
    remote_id, result = run_job(executor, work, "twirl")

    received = emulator.received(remote_id)
    with urllib.request.urlopen(f"{emulator.url}/emulator/jobs/{remote_id}", timeout=10) as reply:
        assert json.loads(reply.read()) == received, "the HTTP route tells what Emulator.received does"
    assert received["semantic_role"] == "sampler_v2"
    assert [item["type"] for item in received["items"]] == ["samplex"]
    assert received["post_processor"]["options"]["twirling"]["enable_gates"] is True

    local = Sampler(mode=fake, options={**options, "default_shots": 20000}).run([(sweep, SWEEP)]).result()
    bits, want = result[0].data.meas, local[0].data.meas
    assert bits.shape == want.shape == (4,)
    assert bits.num_shots >= 2000 and result[0].metadata["num_randomizations"] > 1
    for k in range(len(SWEEP)):
        assert_same_rate(bits[k], want[k], "11")
        assert_same_rate(bits[k], want[k], "00")


# ----- Estimator -----
def exact(circuit: QuantumCircuit, values: np.ndarray, paulis: list[str]) -> np.ndarray:
    """Exact expectations, shaped (observables, parameter sets) like the pubs below."""
    out = np.empty((len(paulis), len(values)))
    for j, row in enumerate(values):
        state = Statevector(circuit.assign_parameters(row))
        for i, pauli in enumerate(paulis):
            out[i, j] = state.expectation_value(SparsePauliOp(pauli)).real
    return out


def estimator_pub(circuit: QuantumCircuit, backend: Any, paulis: list[str], values: np.ndarray,
                  precision: float) -> EstimatorPub:
    """An ISA pub with the observables laid out on the circuit's layout, as qjm hands them over."""
    isa_circuit = isa(circuit, backend)
    observables = [[SparsePauliOp(p).apply_layout(isa_circuit.layout)] for p in paulis]
    return EstimatorPub.coerce((isa_circuit, observables, values), precision)


def test_estimator_values_are_within_standard_errors_of_the_exact_ones(emulator: Emulator,
                                                                      executor: IBMQuantumExecutor) -> None:
    """Single-qubit rotations only (readout error is what TREX, on by default, mitigates): the
    values must match the exact expectations within a few standard errors. The standard error is
    the precision asked for: near +-1 the reported ``stds`` are smaller than that, and they leave
    out the uncertainty of TREX's own calibration."""
    a, b = Parameter("a"), Parameter("b")
    product = QuantumCircuit(2, name="product")
    product.ry(a, 0)
    product.rx(b, 1)
    paulis = ["IZ", "IX", "ZI", "ZZ"]
    values = np.array([[0.0, 0.0], [math.pi / 3, math.pi / 4], [math.pi / 2, math.pi], [2.0, 1.0]])
    pub = estimator_pub(product, executor.backend(), paulis, values, 0.02)
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.02, pubs=True))

    remote_id, result = run_job(executor, work, "est")
    (pub_result,) = result
    assert type(pub_result).__name__ == "EstimatorPubResult"
    evs, stds = pub_result.data.evs, pub_result.data.stds
    assert evs.shape == stds.shape == (4, 4)
    assert np.all(stds > 0) and np.all(stds < 0.05)
    want = exact(product, values, paulis)
    sigma = np.maximum(stds, 0.02)
    assert np.all(np.abs(evs - want) <= SIGMAS * sigma), f"evs\n{evs}\nexact\n{want}\nstds\n{stds}"
    assert result.metadata["target_precision"] == 0.02
    assert result.metadata["options"]["resilience_level"] == 1

    received = emulator.received(remote_id)
    assert received["semantic_role"] == "estimator_v2"
    assert {item["type"] for item in received["items"]} == {"samplex"}
    assert len(received["items"]) == 2, "one item for the pub, one for the TREX calibration"


def test_estimator_matches_the_local_testing_mode(executor: IBMQuantumExecutor, fake: FakeManilaV2) -> None:
    """An entangling circuit, several pubs in one job, no mitigation: the emulated ibm_manila
    gives what the client's local testing mode gives on fake_manila, within standard errors."""
    from qiskit_ibm_runtime.executor_estimator import Estimator

    paulis = ["ZZ", "XX", "ZI"]
    backend = executor.backend()
    pubs = [estimator_pub(ry_bell(False), backend, paulis, SWEEP, 0.02),
            estimator_pub(ry_bell(False), backend, paulis[:1], SWEEP[:1], 0.02)]
    options = {"resilience_level": 0}
    work = JobWork(pubs, RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.02, pubs=True,
                                    primitive_options=options))
    _, result = run_job(executor, work, "est-local")
    local = Estimator(mode=fake, options={**options, "default_precision": 0.01}).run(pubs).result()
    assert [r.data.evs.shape for r in result] == [(3, 4), (1, 1)]
    for got, want in zip(result, local, strict=True):
        sigma = np.sqrt(got.data.stds**2 + want.data.stds**2)
        assert np.all(np.abs(got.data.evs - want.data.evs) <= SIGMAS * sigma), f"{got.data.evs}\nvs\n{want.data.evs}"
    # and noise shows: ZZ of a Bell pair is clearly below 1 without mitigation
    assert np.all(result[0].data.evs[0] < 0.99)


# ----- what reaches the service -----
def test_primitive_options_reach_the_service(emulator: Emulator, executor: IBMQuantumExecutor) -> None:
    """Execution options, dynamical decoupling and resilience go through as given; qjm's own
    shots, precision and tags win over the user's."""
    backend = executor.backend()
    sampler_options = {
        "execution": {"init_qubits": False, "rep_delay": 0.0002},
        "dynamical_decoupling": {"enable": True, "sequence_type": "XpXm"},
        "default_shots": 7,
        "environment": {"job_tags": ["users-own-tag"], "log_level": "INFO"},
    }
    measured = isa(ry_bell(), backend)
    plain = JobWork([SamplerPub.coerce((measured, SWEEP[:1]), 300)], RunOptions(shots=300, pubs=True))
    dd = JobWork(plain.pubs, RunOptions(shots=300, pubs=True, primitive_options=sampler_options))
    plain_id, _ = run_job(executor, plain, "opts-plain")
    dd_id, result = run_job(executor, dd, "opts-dd")
    assert result[0].data.meas.num_shots == 300

    got = emulator.received(dd_id)
    assert got["options"]["init_qubits"] is False and got["options"]["rep_delay"] == 0.0002
    assert got["post_processor"]["options"]["dynamical_decoupling"]["sequence_type"] == "XpXm"
    without, with_dd = emulator.received(plain_id)["gate_counts"][0], got["gate_counts"][0]
    assert with_dd.get("delay", 0) > without.get("delay", 0), "dynamical decoupling inserted no delays"
    assert with_dd.get("x", 0) > without.get("x", 0), "dynamical decoupling inserted no pulses"
    job = executor.service.job(dd_id)
    assert job.tags == ctx_for("opts-dd").tags

    pub = estimator_pub(ry_bell(False), backend, ["ZZ"], SWEEP[:1], 0.05)
    estimator_options = {"resilience_level": 0, "resilience": {"measure_mitigation": True},
                         "twirling": {"num_randomizations": 4}, "default_precision": 0.3}
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.05, pubs=True,
                                     primitive_options=estimator_options))
    remote_id, result = run_job(executor, work, "opts-est")
    got = emulator.received(remote_id)
    options = got["post_processor"]["options"]
    assert options["resilience"]["measure_mitigation"] is True and options["resilience_level"] == 0
    assert options["default_precision"] == 0.05 and got["post_processor"]["precision"] == 0.05
    assert [item["shape"][0] for item in got["items"]] == [4, 4], "4 randomizations for the pub and TREX"
    assert result.metadata["shots"] == math.ceil(1 / 0.05**2)


def test_submit_posts_what_prepare_made(executor: IBMQuantumExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Estimator's preparation runs in ``prepare`` (the CPU step) only: a submit with the
    prepared text never prepares again; without it, submit prepares by itself."""
    import qiskit_ibm_runtime.executor_estimator.prepare as client_prepare

    pub = estimator_pub(ry_bell(False), executor.backend(), ["ZZ", "XX"], SWEEP[:2], 0.05)
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.05, pubs=True))
    prepared = executor.prepare(work)
    assert prepared is not None

    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Estimator was prepared again at submit")

    real = client_prepare.prepare
    monkeypatch.setattr(client_prepare, "prepare", tripwire)
    remote_id = executor.submit(JobWork(work.pubs, work.options, prepared), ctx_for("prep")).remote_id
    with pytest.raises(AssertionError, match="prepared again"):  # the tripwire works
        executor.submit(work, ctx_for("prep", 1))
    monkeypatch.setattr(client_prepare, "prepare", real)
    fallback = executor.submit(work, ctx_for("prep", 2)).remote_id
    for job_id in (remote_id, fallback):
        while not executor.poll(job_id).status.final:
            time.sleep(0.1)
        result = executor.fetch(job_id, work)
        assert result[0].data.evs.shape == (2, 2)


def test_a_post_made_ready_is_sent_without_preparing_and_runs_the_same(executor: IBMQuantumExecutor,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``ready_to_post`` prepares a plain Sampler job (which ``prepare`` leaves to the post):
    its post prepares nothing and the job gives what an unprepared post of it gives."""
    import qiskit_ibm_runtime.executor_sampler.prepare as client_prepare

    circuit = isa(ry_bell().assign_parameters([math.pi / 3]), executor.backend())
    work = JobWork.from_circuits([circuit], RunOptions(shots=400))
    assert executor.prepare(work) is None, "a plain Sampler job is not prepared in the transpile step"
    ready = executor.ready_to_post(work)
    assert ready.prepared is not None and executor.ready_to_post(ready) is ready

    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Sampler was prepared again at submit")

    real = client_prepare.prepare
    monkeypatch.setattr(client_prepare, "prepare", tripwire)
    readied = executor.submit(ready, ctx_for("ready")).remote_id
    with pytest.raises(AssertionError, match="prepared again"):  # the tripwire works
        executor.submit(work, ctx_for("ready", 2))
    monkeypatch.setattr(client_prepare, "prepare", real)
    plain = executor.submit(work, ctx_for("ready", 1)).remote_id
    counts = []
    for job_id in (readied, plain):
        deadline = time.monotonic() + 120
        while not executor.poll(job_id).status.final:
            assert time.monotonic() < deadline, f"job {job_id} did not finish"
            time.sleep(0.1)
        counts.append(executor.fetch(job_id, work)[0].join_data())
    assert counts[0].num_shots == counts[1].num_shots == 400
    assert_same_rate(counts[0], counts[1], "00")


def test_qjm_posts_what_the_clients_own_primitives_post(emulator: Emulator, executor: IBMQuantumExecutor) -> None:
    """The same pubs and options through qjm and through the client's own executor primitives
    reach the service as the same program (qjm's defaults set on the client's side as well)."""
    from qiskit_ibm_runtime.executor_estimator import Estimator
    from qiskit_ibm_runtime.executor_sampler import Sampler

    backend = executor.backend()
    pub = estimator_pub(ry_bell(False), backend, ["ZZ", "XX"], SWEEP[:2], 0.05)
    options = {"twirling": {"num_randomizations": 3}, "execution": {"init_qubits": False}}
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.05, pubs=True,
                                     primitive_options=options))
    ours, _ = run_job(executor, work, "same-est")
    theirs = Estimator(mode=backend, options={**options, "default_precision": 0.05}).run([pub])
    theirs.result()

    measured = isa(ry_bell(), backend)
    sampler_options = {"twirling": {"enable_gates": True}, "dynamical_decoupling": {"enable": True}}
    swork = JobWork([SamplerPub.coerce((measured, SWEEP), 256)],
                    RunOptions(shots=256, pubs=True, primitive_options=sampler_options))
    ours_s, _ = run_job(executor, swork, "same-samp")
    theirs_s = Sampler(mode=backend, options={**sampler_options, "default_shots": 256}).run([(measured, SWEEP)])
    theirs_s.result()
    for mine, client in ((ours, theirs.job_id()), (ours_s, theirs_s.job_id())):
        assert emulator.received(mine) == emulator.received(client)


def test_a_job_the_client_cannot_prepare_is_refused_before_posting(emulator: Emulator, executor: IBMQuantumExecutor) -> None:
    pub = estimator_pub(ry_bell(False), executor.backend(), ["ZZ"], SWEEP[:1], 0.05)
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, pubs=True,
                                     primitive_options={"resilience": {"pec_mitigation": True}}))
    before = emulator.stats()["jobs_posted"]
    with pytest.raises(ExecutorError, match="cannot prepare.*noise model"):
        executor.prepare(work)
    with pytest.raises(ExecutorError, match="cannot prepare"):
        executor.submit(work, ctx_for("bad"))
    assert emulator.stats()["jobs_posted"] == before


# ----- results as qjm stores them -----
def same_result(got: PrimitiveResult, want: PrimitiveResult) -> None:
    assert len(got) == len(want)
    assert got.metadata == want.metadata
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b)
        assert a.metadata == b.metadata
        assert a.data.shape == b.data.shape and list(a.data) == list(b.data)
        for name in a.data:
            x, y = a.data[name], b.data[name]
            assert type(x) is type(y)
            assert (x == y) if isinstance(x, BitArray) else np.array_equal(x, y, equal_nan=True)


@pytest.fixture(scope="module")
def both_results(emulator: Emulator, device_catalog: Any) -> Iterator[tuple[PrimitiveResult, PrimitiveResult, JobWork]]:
    """One twirled Sampler job and one Estimator job, as the client returns them."""
    mp = pytest.MonkeyPatch()
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "IAM_URL", "QISKIT_FUNCTIONS_EXPERIMENTAL"):
        mp.delenv(name, raising=False)
    mp.setenv("QISKIT_IBM_URL", emulator.url)
    executor = IBMQuantumExecutor(BACKEND)
    backend = executor.backend()
    measured = isa(ry_bell(), backend)
    sampler_work = JobWork([SamplerPub.coerce((measured, SWEEP[:2]), 200)], RunOptions(
        shots=200, pubs=True, primitive_options={"twirling": {"enable_measure": True}}))
    estimator_work = JobWork([estimator_pub(ry_bell(False), backend, ["ZZ", "XX"], SWEEP[:3], 0.05)],
                             RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.05, pubs=True))
    _, sampled = run_job(executor, sampler_work, "rt-s")
    _, estimated = run_job(executor, estimator_work, "rt-e")
    yield sampled, estimated, sampler_work
    mp.undo()


def test_results_round_trip_through_qjm_outputs(both_results: tuple[PrimitiveResult, PrimitiveResult, JobWork]) -> None:
    from qiskit_ibm_runtime.results.quantum_program import Metadata

    sampled, estimated, sampler_work = both_results
    for result in (sampled, estimated):
        back = outputs.decode_result(outputs.encode(result, sampler_work))
        same_result(back, result)
        assert isinstance(back.metadata["executor"], Metadata)
        assert back.metadata["executor"].chunk_timing[0].start == result.metadata["executor"].chunk_timing[0].start
    assert estimated.metadata["target_precision"] == 0.05


def test_zero_noise_extrapolation_runs_and_round_trips(executor: IBMQuantumExecutor) -> None:
    """Resilience level 2 (gate folding, one item per noise factor) through the emulator; its
    extra fields and array-valued metadata survive qjm's storage."""
    pub = estimator_pub(ry_bell(False), executor.backend(), ["ZZ", "XX"], SWEEP[:1], 0.1)
    work = JobWork([pub], RunOptions(primitive=Primitive.ESTIMATOR.value, precision=0.1, pubs=True,
                                     primitive_options={"resilience_level": 2}))
    _, result = run_job(executor, work, "zne")
    data = result[0].data
    assert {"evs", "stds", "evs_noise_factors", "evs_extrapolated"} <= set(data)
    assert data.evs.shape == (2, 1) and data.evs_noise_factors.shape[:2] == (2, 1)
    back = outputs.decode_result(outputs.encode_result(result))
    for name in data:
        assert np.array_equal(back[0].data[name], data[name], equal_nan=True)  # a failed fit is NaN
    extrapolators = result[0].metadata["resilience"]["zne"]["extrapolators"]
    assert np.array_equal(back[0].metadata["resilience"]["zne"]["extrapolators"], extrapolators)


def test_a_prepared_job_of_an_unknown_layout_is_prepared_again() -> None:
    from qjm.executors.ibm.primitives import FORMAT, Prepared

    prepared = Prepared({"schema_version": "v2.0"}, {"environment": {}})
    assert Prepared.from_json(prepared.to_json()) == prepared
    assert Prepared.from_json(json.dumps({"format": FORMAT + 1, "params": {}, "executor_options": {}})) is None
