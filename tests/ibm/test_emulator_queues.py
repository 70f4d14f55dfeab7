"""The emulator's device queues (``qjm.emulator.queues``), seen through the real client.

Serial devices run one job at a time in post order; other users' background jobs count in a
device's queue and nowhere else; ``service.least_busy()`` reads the listing; a device in
maintenance holds its queue until it is back online. Assertions are on order and queue
lengths, never on wall-clock speed.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qiskit import QuantumCircuit, transpile

from qjm.emulator import DEFAULT_INSTANCE, Emulator, Faults
from qjm.emulator.__main__ import build_parser
from qjm.emulator.devices import DeviceCatalog
from qjm.emulator.faults import from_args

BACKEND = "ibm_manila"


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[[Emulator], Any]:
    """A fresh ``QiskitRuntimeService`` on an emulator (fresh: the client caches the listing)."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    def make(emu: Emulator) -> QiskitRuntimeService:
        monkeypatch.setenv("IAM_URL", emu.url)
        monkeypatch.setenv("QISKIT_FUNCTIONS_EXPERIMENTAL", "1")
        return QiskitRuntimeService(
            channel="ibm_quantum_platform", token="any", instance=DEFAULT_INSTANCE, url=emu.url,
            url_resolver=lambda url, instance, private_endpoint, channel: f"{url}/api/v1",
        )

    return make


def one_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(1, 1, name="one")
    qc.x(0)
    qc.measure(0, 0)
    return qc


def post_json(emu: Emulator, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{emu.url}{path}", json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def stamp(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


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


def test_queue_flags_round_trip_and_unknown_devices_are_refused() -> None:
    faults = Faults(serial=True, background=(("ibm_manila", 2), ("ibm_lima", 1)), offline=("ibm_quito",),
                    usage_limit=30.0, estimate_error=0.1, seed=3)
    assert from_args(build_parser().parse_args(faults.to_argv())) == faults
    parsed = build_parser().parse_args(["--serial", "--background", "ibm_manila=2", "--offline", "ibm_lima"])
    assert from_args(parsed) == Faults(serial=True, background=(("ibm_manila", 2),), offline=("ibm_lima",))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--background", "ibm_manila"])  # no =N
    assert Faults(background=(("ibm_nowhere", 1),), offline=("ibm_manila",)).unknown_devices(
        DeviceCatalog().names()) == ["ibm_nowhere"]


def test_serial_device_runs_in_post_order_behind_other_users(emulators: Callable[..., Emulator],
                                                             connect: Callable[[Emulator], Any]) -> None:
    """Two other users' jobs, then three of ours, on a serial device that starts in maintenance
    (so the queue is exactly known): 5 pending; once online, ours run one at a time in post
    order, and nothing of the others' shows in listings or stats."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.2, serial=True, background=[(BACKEND, 2)], offline=[BACKEND])
    service = connect(emu)
    backend = service.backend(BACKEND)
    assert backend.status().pending_jobs == 2, "other users' jobs are in the queue"
    assert service.jobs() == [], "but not in this instance's listing"
    isa = transpile(one_circuit(), backend, seed_transpiler=7)
    jobs = [Sampler(mode=backend).run([isa], shots=20) for _ in range(3)]
    status = backend.status()
    assert (status.pending_jobs, status.operational, status.status_msg) == (5, False, "maintenance")
    listing = {d["name"]: d for d in service._active_api_client.list_backends()}
    assert listing[BACKEND]["queue_length"] == 5 and listing[BACKEND]["status"]["name"] != "online"

    post_json(emu, f"/emulator/backends/{BACKEND}", {"status": "online"})
    for job in jobs:
        job.wait_for_final_state(timeout=30)
        assert job.status() == "DONE"
    spans = [(stamp(m["timestamps"]["running"]), stamp(m["timestamps"]["finished"]))
             for m in (job.metrics() for job in jobs)]
    for (_, finished), (running, _) in zip(spans, spans[1:], strict=False):
        assert running >= finished, f"a serial device runs one job at a time, in post order: {spans}"
    assert backend.status().pending_jobs == 0
    assert sorted(j.job_id() for j in service.jobs()) == sorted(j.job_id() for j in jobs)
    stats = emu.stats()
    assert (stats["jobs_posted"], stats["completed"], stats["pending"]) == (3, 3, 0)
    assert stats["jobs_posted_by_backend"] == {BACKEND: 3}
    assert stats["max_pending_by_backend"] == {BACKEND: 3}, "ours only, never the others' two"


def test_least_busy_picks_the_shortest_queue(emulators: Callable[..., Emulator],
                                             connect: Callable[[Emulator], Any]) -> None:
    """Three devices online with 1, 2 and 3 other users' jobs (serial, 60 s each, so nothing
    ends during the test): least_busy picks the 1; with min_num_qubits the 127-qubit one; after
    two of our posts to the 1, the 2 wins."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    names = DeviceCatalog().names()
    queues = {"ibm_manila": 1, "ibm_brisbane": 2, "ibm_lima": 3}
    emu = emulators(job_seconds=60, serial=True, background=list(queues.items()),
                    offline=[n for n in names if n not in queues])
    service = connect(emu)
    assert service.least_busy().name == "ibm_manila"
    assert connect(emu).least_busy(min_num_qubits=6).name == "ibm_brisbane"
    backend = service.backend("ibm_manila")
    isa = transpile(one_circuit(), backend, seed_transpiler=7)
    for _ in range(2):
        Sampler(mode=backend).run([isa], shots=20)
    assert backend.status().pending_jobs == 3
    assert connect(emu).least_busy().name == "ibm_brisbane"
    # Other users' jobs arrive mid-run: brisbane and lima now have 5 each, manila's 3 win again.
    post_json(emu, "/emulator/backends/ibm_brisbane", {"background": 3})
    post_json(emu, "/emulator/backends/ibm_lima", {"background": 2})
    assert service.backend("ibm_lima").status().pending_jobs == 5
    assert connect(emu).least_busy().name == "ibm_manila"
    assert emu.stats()["jobs_posted"] == 2, "other users' jobs are never this instance's"
    with pytest.raises(urllib.error.HTTPError) as refused:
        post_json(emu, "/emulator/backends/ibm_lima", {"background": -1})
    assert refused.value.code == 400


def test_queued_jobs_wait_for_a_device_in_maintenance(emulators: Callable[..., Emulator],
                                                      connect: Callable[[Emulator], Any]) -> None:
    """Parallel mode: a device taken down mid-run keeps its queued job queued (well past its
    job time) and runs it once back online; a post to it is accepted meanwhile."""
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = emulators(job_seconds=0.3)
    service = connect(emu)
    backend = service.backend(BACKEND)
    isa = transpile(one_circuit(), backend, seed_transpiler=7)
    before = Sampler(mode=backend).run([isa], shots=20)
    before.wait_for_final_state(timeout=30)
    assert post_json(emu, f"/emulator/backends/{BACKEND}", {"status": "maintenance"})["status"] == "maintenance"
    assert not backend.status().operational
    held = Sampler(mode=backend).run([isa], shots=20)
    time.sleep(1.0)  # over three job times: it would have run by now
    assert held.status() == "QUEUED"
    listing = {d["name"]: d for d in connect(emu)._active_api_client.list_backends()}
    assert (listing[BACKEND]["status"]["name"], listing[BACKEND]["queue_length"]) == ("maintenance", 1)
    post_json(emu, f"/emulator/backends/{BACKEND}", {"status": "online"})
    held.wait_for_final_state(timeout=30)
    assert held.status() == "DONE" and backend.status().operational
    assert emu.stats()["completed"] == 2


def test_device_state_endpoint_refuses_nonsense(emulators: Callable[..., Emulator]) -> None:
    emu = emulators(job_seconds=0.1)
    for path, body, code in ((f"/emulator/backends/{BACKEND}", {"status": "broken"}, 400),
                             ("/emulator/backends/ibm_nowhere", {"status": "online"}, 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            post_json(emu, path, body)
        assert err.value.code == code
