"""The emulator's QPU time (``qjm.emulator.charges`` and ``usage``), seen through the real client.

Expected charges are computed here from the formula's inputs: Qiskit's own ALAP schedule and
``estimate_duration`` on the device's ``Target`` (as the client builds it from the emulator's
calibration data), the configuration's ``default_rep_delay``, and the program's executions.
"""

from __future__ import annotations

import json
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit.transpiler import PassManager
from qiskit.transpiler.passes import ALAPScheduleAnalysis, PadDelay

from qjm.emulator import DEFAULT_INSTANCE, Emulator, Faults
from qjm.emulator.charges import JOB_OVERHEAD_SECONDS
from qjm.emulator.devices import DeviceCatalog

BACKEND = "ibm_manila"


@pytest.fixture
def emulators(device_catalog: DeviceCatalog) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**knobs: Any) -> Emulator:
        emu = Emulator("127.0.0.1", 0, Faults(**knobs), device_catalog).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[[Emulator], Any]:
    from qiskit_ibm_runtime import QiskitRuntimeService

    def make(emu: Emulator) -> QiskitRuntimeService:
        monkeypatch.setenv("IAM_URL", emu.url)
        monkeypatch.setenv("QISKIT_FUNCTIONS_EXPERIMENTAL", "1")
        return QiskitRuntimeService(
            channel="ibm_quantum_platform", token="any", instance=DEFAULT_INSTANCE, url=emu.url,
            url_resolver=lambda url, instance, private_endpoint, channel: f"{url}/api/v1",
        )

    return make


def post_json(emu: Emulator, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{emu.url}{path}", json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def swept_circuit() -> QuantumCircuit:
    """Two qubits, an entangler and a parameter: a few gates of each length on the device."""
    theta = Parameter("theta")
    qc = QuantumCircuit(2, 2, name="swept")
    qc.h(0)
    qc.rx(theta, 1)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def one_shot_seconds(isa: QuantumCircuit, backend: Any) -> float:
    """One shot's duration by Qiskit itself: ALAP schedule on the target, then estimate_duration."""
    scheduled = PassManager([ALAPScheduleAnalysis(target=backend.target), PadDelay(target=backend.target)]).run(isa)
    return float(scheduled.estimate_duration(backend.target))


def expected_charge(backend: Any, work: list[tuple[QuantumCircuit, int]]) -> float:
    rep_delay = backend.configuration().default_rep_delay  # the client gives it in seconds
    return JOB_OVERHEAD_SECONDS + sum(n * (one_shot_seconds(c, backend) + rep_delay) for c, n in work)


def test_a_job_is_charged_by_the_formula(emulators: Callable[..., Emulator], connect: Callable[[Emulator], Any]) -> None:
    """A 3-point sweep at 50 shots (150 executions) on a device in maintenance: the estimate is
    there at once, the usage is 0 and pending while queued, and final (the same) once done;
    the instance's consumption is that charge. A job cancelled before it ran costs nothing."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.2, offline=[BACKEND])
    service = connect(emu)
    backend = service.backend(BACKEND)
    isa = transpile(swept_circuit(), backend, seed_transpiler=7)
    values = np.linspace(0, np.pi, 3).reshape(3, 1)
    expected = expected_charge(backend, [(isa, 150)])
    job = Sampler(mode=backend).run([(isa, values)], shots=50)
    cancelled = Sampler(mode=backend).run([(isa, values)], shots=50)
    assert job.usage_estimation["quantum_seconds"] == pytest.approx(expected, rel=1e-9)
    assert job.usage() == 0 and job.metrics()["usage"]["status"] == "pending"
    cancelled.cancel()

    post_json(emu, f"/emulator/backends/{BACKEND}", {"status": "online"})
    job.wait_for_final_state(timeout=30)
    assert job.status() == "DONE"
    assert job.usage() == pytest.approx(expected, rel=1e-9)
    assert job.metrics()["usage"]["quantum_seconds"] == pytest.approx(expected, rel=1e-9)
    assert cancelled.status() == "CANCELLED" and cancelled.usage() == 0
    assert cancelled.metrics()["usage"]["status"] == "final"
    used = service.usage()
    assert used["usage_consumed_seconds"] == pytest.approx(expected, rel=1e-9)
    assert (used["usage_limit_reached"], used["usage_limit_seconds"]) == (False, None)
    assert emu.stats()["quantum_seconds_total"] == pytest.approx(expected, rel=1e-9)


def test_legacy_sampler_pubs_are_charged_per_pub(emulators: Callable[..., Emulator],
                                                 connect: Callable[[Emulator], Any]) -> None:
    """The deprecated SamplerV2 (program "sampler"): pubs with their own shots, one swept."""
    from qiskit_ibm_runtime import SamplerV2

    emu = emulators(job_seconds=0.2)
    backend = connect(emu).backend(BACKEND)
    isa = transpile(swept_circuit(), backend, seed_transpiler=7)
    bound = isa.assign_parameters([0.3])
    values = np.array([[0.1], [0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        job = SamplerV2(mode=backend).run([(isa, values, 30), (bound, None, 40)])
    job.wait_for_final_state(timeout=30)
    assert job.usage() == pytest.approx(expected_charge(backend, [(isa, 60), (bound, 40)]), rel=1e-9)


def test_estimate_error_is_seeded_and_bounded(emulators: Callable[..., Emulator], connect: Callable[[Emulator], Any]) -> None:
    from qiskit_ibm_runtime.executor_sampler import Sampler

    seen = []
    for _ in range(2):
        emu = emulators(job_seconds=0.1, estimate_error=0.25, seed=11, offline=[BACKEND])
        backend = connect(emu).backend(BACKEND)
        isa = transpile(swept_circuit(), backend, seed_transpiler=7).assign_parameters([0.5])
        charge = expected_charge(backend, [(isa, 20)])
        estimates = [Sampler(mode=backend).run([isa], shots=20).usage_estimation["quantum_seconds"] for _ in range(3)]
        assert all(abs(e / charge - 1) <= 0.25 for e in estimates) and len(set(estimates)) == 3, estimates
        seen.append(estimates)
    assert seen[0] == seen[1], "the same seed, the same estimates"


def test_usage_limit_holds_queued_jobs_until_raised(emulators: Callable[..., Emulator],
                                                    connect: Callable[[Emulator], Any]) -> None:
    """Serial device, a limit below one job's charge: the first job runs (nothing consumed yet),
    after it the limit is reached and the second stays queued; raised, it runs."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.2, serial=True, usage_limit=1.0)
    service = connect(emu)
    backend = service.backend(BACKEND)
    isa = transpile(swept_circuit(), backend, seed_transpiler=7).assign_parameters([0.5])
    first, second = (Sampler(mode=backend).run([isa], shots=20) for _ in range(2))
    first.wait_for_final_state(timeout=30)
    time.sleep(1.0)  # five job times: the second would have run by now
    assert (first.status(), second.status()) == ("DONE", "QUEUED")
    used = service.usage()
    assert used["usage_limit_reached"] is True and used["usage_remaining_seconds"] == 0
    assert used["usage_consumed_seconds"] == pytest.approx(first.usage()) and first.usage() > 1.0

    raised = post_json(emu, "/emulator/usage", {"limit": 100.0})
    assert raised["usage_limit_reached"] is False
    second.wait_for_final_state(timeout=30)
    assert second.status() == "DONE"
    used = service.usage()
    assert used["usage_consumed_seconds"] == pytest.approx(first.usage() + second.usage())
    assert used["usage_remaining_seconds"] == pytest.approx(100.0 - used["usage_consumed_seconds"])


def test_batch_usage_is_its_jobs_charges_and_failures_cost_nothing(
        emulators: Callable[..., Emulator], connect: Callable[[Emulator], Any]) -> None:
    """batch.usage() is the sum of its jobs' usage; a job failed by the system (injected
    failure, code 1011) costs 0."""
    from qiskit_ibm_runtime import Batch
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.2, fail_every=3, fail_codes=[1011])
    backend = connect(emu).backend(BACKEND)
    isa = transpile(swept_circuit(), backend, seed_transpiler=7).assign_parameters([0.5])
    batch = Batch(backend=backend)
    jobs = [Sampler(mode=batch).run([isa], shots=shots) for shots in (20, 40, 60)]
    for job in jobs:
        job.wait_for_final_state(timeout=30)
    assert [j.status() for j in jobs] == ["DONE", "DONE", "ERROR"]
    assert jobs[2].usage() == 0
    assert jobs[1].usage() > jobs[0].usage() > JOB_OVERHEAD_SECONDS
    assert batch.usage() == pytest.approx(jobs[0].usage() + jobs[1].usage())
    batch.close()


def test_parallel_mode_holds_jobs_while_the_limit_is_reached(emulators: Callable[..., Emulator],
                                                              connect: Callable[[Emulator], Any]) -> None:
    """Without --serial the same rule: at a limit of 0 a posted job waits (the client warns at
    the post, as it does against the service), and runs once the limit is raised."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.2, usage_limit=0.0)
    service = connect(emu)
    backend = service.backend(BACKEND)
    isa = transpile(swept_circuit(), backend, seed_transpiler=7).assign_parameters([0.5])
    with pytest.warns(UserWarning):
        job = Sampler(mode=backend).run([isa], shots=20)
    time.sleep(0.6)  # three job times
    assert job.status() == "QUEUED" and service.usage()["usage_limit_reached"] is True
    post_json(emu, "/emulator/usage", {"limit": None})
    job.wait_for_final_state(timeout=30)
    assert job.status() == "DONE" and service.usage()["usage_limit_seconds"] is None


def http(emu: Emulator, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{emu.url}/api/v1{path}", data, method=method,
                                     headers={"Content-Type": "application/json", "Service-CRN": DEFAULT_INSTANCE})
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def test_what_failed_and_cancelled_jobs_cost(emulators: Callable[..., Emulator]) -> None:
    """A program the service cannot run fails as a user error: the per-job overhead; a job
    cancelled while running: the overhead plus part of the rest, never more than its charge."""
    from qiskit_ibm_runtime import RuntimeEncoder

    emu, quick = emulators(job_seconds=5.0, serial=True), emulators(job_seconds=0.2)
    bad = http(quick, "POST", "/jobs", {"program_id": "executor", "backend": BACKEND, "params": {"schema_version": "v1.0"}})
    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    params = json.loads(json.dumps({"pubs": [(qc, None, 4000)], "options": {}}, cls=RuntimeEncoder))
    other = http(emu, "POST", "/jobs", {"program_id": "sampler", "backend": "ibm_lima", "params": params})
    charge = http(emu, "GET", f"/jobs/{other['id']}")["estimated_running_time_seconds"]
    assert charge > JOB_OVERHEAD_SECONDS + 4000 * 250e-6  # 4000 shots, each at least the rep delay
    wait = time.monotonic() + 30
    while http(emu, "GET", f"/jobs/{other['id']}")["status"] != "Running":
        assert time.monotonic() < wait
        time.sleep(0.02)
    http(emu, "POST", f"/jobs/{other['id']}/cancel")
    cancelled = http(emu, "GET", f"/jobs/{other['id']}/metrics")["usage"]
    assert cancelled["status"] == "final" and JOB_OVERHEAD_SECONDS <= cancelled["quantum_seconds"] < charge
    assert emu.stats()["quantum_seconds_total"] == cancelled["quantum_seconds"]
    while http(quick, "GET", f"/jobs/{bad['id']}")["status"] != "Failed":
        assert time.monotonic() < wait
        time.sleep(0.05)
    assert http(quick, "GET", f"/jobs/{bad['id']}/metrics")["usage"]["qpu_charge_time_seconds"] == JOB_OVERHEAD_SECONDS
    assert quick.stats()["quantum_seconds_total"] == JOB_OVERHEAD_SECONDS
