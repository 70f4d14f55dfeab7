"""The emulator on its own: routes called as functions (no sockets), its knobs, and the
behaviours added for batch expiry and coded failures, checked through the real client.

The real-client tests point ``QiskitRuntimeService`` straight at an emulator (no qjm executor):
they assert what a user of qiskit-ibm-runtime would see against the service.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qiskit import QuantumCircuit, transpile

from qjm.emulator import DEFAULT_INSTANCE, Emulator, Faults
from qjm.emulator.__main__ import build_parser
from qjm.emulator.devices import DeviceCatalog
from qjm.emulator.faults import from_args
from qjm.emulator.routes import Reply, Request, dispatch
from qjm.emulator.state import ServiceState

BACKEND = "ibm_manila"


# ----- helpers -----
@pytest.fixture
def make_state(device_catalog: DeviceCatalog) -> Iterator[Callable[..., ServiceState]]:
    """A service state with the given ``Faults`` knobs and no HTTP server; stopped after the test."""
    made: list[ServiceState] = []

    def make(**knobs: Any) -> ServiceState:
        state = ServiceState(Faults(**knobs), device_catalog)
        made.append(state)
        return state

    yield make
    for state in made:
        state.stop()


def call(state: ServiceState, method: str, path: str, body: Any = None, **query: str) -> Reply:
    """One request straight into the routes, as the HTTP transport would make it."""
    raw = json.dumps(body).encode() if body is not None else b""
    return dispatch(state, Request(method, path, {k: [v] for k, v in query.items()}, raw, {"service-crn": DEFAULT_INSTANCE}))


def error_code(reply: Reply) -> int:
    return reply.body["errors"][0]["code"]


def one_circuit() -> QuantumCircuit:
    """X then measure: reads 1 on almost every shot, even with the device's noise."""
    qc = QuantumCircuit(1, 1, name="one")
    qc.x(0)
    qc.measure(0, 0)
    return qc


def sampler_params(shots: int = 20) -> dict[str, Any]:
    """Legacy ``sampler`` params as the client encodes them (RuntimeEncoder JSON, circuits as QPY)."""
    from qiskit_ibm_runtime import RuntimeEncoder

    return json.loads(json.dumps({"pubs": [(one_circuit(), None, shots)], "options": {}}, cls=RuntimeEncoder))


def post(state: ServiceState, session_id: str | None = None, params: dict[str, Any] | None = None,
         program_id: str = "sampler") -> Reply:
    body = {"program_id": program_id, "backend": BACKEND, "params": params if params is not None else sampler_params()}
    if session_id:
        body["session_id"] = session_id
    return call(state, "POST", "/api/v1/jobs", body)


def job_state(state: ServiceState, job_id: str) -> dict[str, Any]:
    reply = call(state, "GET", f"/api/v1/jobs/{job_id}")
    assert reply.status == 200, reply.body
    return reply.body["state"]


def wait_status(state: ServiceState, job_id: str, statuses: tuple[str, ...], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = job_state(state, job_id)
        if current["status"] in statuses:
            return current
        assert time.monotonic() < deadline, f"job {job_id} still {current} after {timeout}s"
        time.sleep(0.01)


# ----- the knobs -----
def test_faults_round_trip_through_the_command_line() -> None:
    """What EmulatorProcess passes to ``python -m qjm.emulator`` rebuilds the same knobs."""
    faults = Faults(job_seconds=0.5, pending_limit=3, batch_ttl=60.0, fail_every=3, fail_codes=(1011, 1002),
                    throttle=0.25, retry_after=2, server_errors=0.1, seed=7)
    args = build_parser().parse_args(faults.to_argv())
    assert from_args(args) == faults
    assert from_args(build_parser().parse_args([])) == Faults(), "no flags, no faults"


@pytest.mark.parametrize("knobs", [
    {"throttle": 1.5}, {"server_errors": -0.1}, {"pending_limit": 0}, {"batch_ttl": 0},
    {"fail_codes": (1011,)}, {"fail_every": 2, "fail_codes": (0,)}, {"job_seconds": -1},
])
def test_faults_refuse_nonsense(knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults(**knobs)


# ----- routes as functions -----
def test_token_and_backend_routes(make_state: Callable[..., ServiceState]) -> None:
    state = make_state()
    token = call(state, "POST", "/identity/token")
    payload = token.body["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == token.body["expires_in"] == 3600

    names = {d["name"] for d in call(state, "GET", "/api/v1/backends").body["devices"]}
    assert {BACKEND, "ibm_brisbane"} <= names
    conf = call(state, "GET", f"/api/v1/backends/{BACKEND}/configuration")
    assert conf.status == 200 and conf.body["backend_name"] == BACKEND and conf.body["n_qubits"] == 5
    missing = call(state, "GET", "/api/v1/backends/ibm_nowhere/configuration")
    assert missing.status == 404 and error_code(missing) == 1216
    assert call(state, "GET", "/api/v1/nothing/here").status == 404
    assert call(state, "POST", "/api/v1/jobs", None).status == 400, "a post without program or params is refused"
    assert state.stats()["requests"] == 5, "the token exchange is not an API request"


def test_closed_batch_refuses_posts(make_state: Callable[..., ServiceState]) -> None:
    state = make_state(job_seconds=0.05)
    created = call(state, "POST", "/api/v1/sessions", {"mode": "batch", "backend": BACKEND})
    batch_id = created.body["id"]
    details = call(state, "GET", f"/api/v1/sessions/{batch_id}").body
    assert (details["state"], details["accepting_jobs"], details["mode"]) == ("open", True, "batch")

    assert call(state, "PATCH", f"/api/v1/sessions/{batch_id}", {"accepting_jobs": False}).status == 204
    details = call(state, "GET", f"/api/v1/sessions/{batch_id}").body
    assert (details["state"], details["accepting_jobs"]) == ("closed", False), "no pending jobs: closed at once"
    refused = post(state, batch_id)
    assert refused.status == 400 and "closed" in refused.body["errors"][0]["message"]
    assert state.stats()["jobs_posted"] == 0


def test_pending_limit_is_refused_with_code_3458(make_state: Callable[..., ServiceState]) -> None:
    state = make_state(pending_limit=1, job_seconds=30)
    first = post(state)
    assert first.status == 200
    refused = post(state)
    assert refused.status == 400 and error_code(refused) == 3458
    assert "limit of 1 pending jobs" in refused.body["errors"][0]["message"]
    assert call(state, "POST", f"/api/v1/jobs/{first.body['id']}/cancel").status == 204
    assert post(state).status == 200, "a cancelled job frees its slot"
    stats = state.stats()
    assert (stats["jobs_posted"], stats["refused_pending_limit"], stats["max_pending"]) == (2, 1, 1)


def test_throttle_and_server_errors_refuse_before_acting(make_state: Callable[..., ServiceState]) -> None:
    state = make_state(throttle=1.0, retry_after=4)
    get = call(state, "GET", "/api/v1/backends")
    assert get.status == 429 and get.headers == {"Retry-After": "4"}
    posted = post(state)
    assert posted.status == 429 and "Retry-After" not in posted.headers, "the service sends Retry-After on GETs only"
    assert call(state, "GET", "/emulator/stats").status == 200, "the emulator's own endpoint is never throttled"
    stats = state.stats()
    assert (stats["throttled"], stats["jobs_posted"]) == (2, 0)

    failing = make_state(server_errors=1.0)
    assert post(failing).status == 503 and failing.stats()["jobs_posted"] == 0


def test_failed_jobs_carry_reason_codes_in_turn(make_state: Callable[..., ServiceState]) -> None:
    """fail_every=2 with codes 1011 then 1002: jobs 2 and 4 fail with those codes, in IBM's shape."""
    state = make_state(job_seconds=0.05, fail_every=2, fail_codes=(1011, 1002))
    ids = [post(state).body["id"] for _ in range(4)]
    ends = [wait_status(state, job_id, ("Completed", "Failed")) for job_id in ids]
    assert [e["status"] for e in ends] == ["Completed", "Failed", "Completed", "Failed"]
    assert [e.get("reasonCode") for e in ends] == [None, 1011, None, 1002]
    assert ends[1]["reason"].startswith("Error publishing job at the backend queue.")
    assert ends[3]["reason"].startswith("Error in the validation process of the job.")
    assert call(state, "GET", f"/api/v1/jobs/{ids[1]}/results").text == ends[1]["reason"]
    stats = state.stats()
    assert stats["failed_by_code"] == {"1011": 1, "1002": 1} and stats["failed"] == 2 and stats["completed"] == 2


def test_a_program_error_fails_without_a_code(make_state: Callable[..., ServiceState]) -> None:
    state = make_state(job_seconds=0.05)
    job_id = post(state, params={"schema_version": "v1.0"}, program_id="executor").body["id"]
    end = wait_status(state, job_id, ("Completed", "Failed"))
    assert end["status"] == "Failed" and "reasonCode" not in end and "v2.0" in end["reason"]
    assert state.stats()["failed_by_code"] == {"none": 1}


def test_expired_batch_fails_its_queued_jobs(make_state: Callable[..., ServiceState]) -> None:
    """The batch lives 0.5 s from its first running job: that job (running) finishes, the one
    posted after it (still queued at the deadline) fails, and the batch takes no more posts."""
    state = make_state(job_seconds=2.0, batch_ttl=0.5)
    state.catalog.simulator(BACKEND)  # built now, not inside the first job's 2 s
    batch_id = call(state, "POST", "/api/v1/sessions", {"mode": "batch", "backend": BACKEND}).body["id"]
    running_id = post(state, batch_id).body["id"]
    wait_status(state, running_id, ("Running",))
    details = call(state, "GET", f"/api/v1/sessions/{batch_id}").body
    assert (details["state"], details["max_ttl"]) == ("active", 0.5) and details["activated_at"]
    queued_id = post(state, batch_id).body["id"]
    assert job_state(state, queued_id)["status"] == "Queued"

    failed = wait_status(state, queued_id, ("Completed", "Failed", "Cancelled"))
    assert failed["status"] == "Failed" and f"batch {batch_id} expired" in failed["reason"]
    assert job_state(state, running_id)["status"] == "Running", "a running job outlives its batch"
    details = call(state, "GET", f"/api/v1/sessions/{batch_id}").body
    assert (details["state"], details["accepting_jobs"]) == ("closed", False) and details["closed_at"]
    assert post(state, batch_id).status == 400
    assert wait_status(state, running_id, ("Completed", "Failed"))["status"] == "Completed"
    stats = state.stats()
    assert (stats["sessions_expired"], stats["jobs_posted"], stats["failed"]) == (1, 2, 1)


def test_client_max_ttl_is_capped_by_batch_ttl(make_state: Callable[..., ServiceState]) -> None:
    state = make_state(batch_ttl=60)
    asked = {"mode": "batch", "backend": BACKEND}
    assert call(state, "POST", "/api/v1/sessions", {**asked, "max_ttl": 28800}).body["max_ttl"] == 60
    assert call(state, "POST", "/api/v1/sessions", {**asked, "max_ttl": 10}).body["max_ttl"] == 10
    assert call(make_state(), "POST", "/api/v1/sessions", asked).body["max_ttl"] is None, "default: no expiry"


# ----- through the real client -----
@pytest.fixture
def runtime_service(monkeypatch: pytest.MonkeyPatch) -> Callable[[Emulator], Any]:
    """``QiskitRuntimeService`` pointed at an emulator as ibm-quantum-api.md describes."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    def connect(emu: Emulator) -> QiskitRuntimeService:
        monkeypatch.setenv("IAM_URL", emu.url)
        monkeypatch.setenv("QISKIT_FUNCTIONS_EXPERIMENTAL", "1")
        return QiskitRuntimeService(
            channel="ibm_quantum_platform", token="any", instance=DEFAULT_INSTANCE, url=emu.url,
            url_resolver=lambda url, instance, private_endpoint, channel: f"{url}/api/v1",
        )

    return connect


def test_reason_code_through_the_client(make_emulator: Callable[..., Emulator],
                                        runtime_service: Callable[[Emulator], Any]) -> None:
    """The client shows the code as "Error code N; reason" in error_message() and result()."""
    from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError
    from qiskit_ibm_runtime.executor_sampler import Sampler

    emu = make_emulator(job_seconds=0.2, fail_every=1, fail_codes=[1011, 1002])
    service = runtime_service(emu)
    backend = service.backend(BACKEND)
    isa = transpile(one_circuit(), backend, seed_transpiler=7)
    sampler = Sampler(mode=backend)
    transient, permanent = sampler.run([isa], shots=20), sampler.run([isa], shots=20)
    for job in (transient, permanent):
        job.wait_for_final_state(timeout=30)
        assert job.status() == "ERROR"
    assert transient.error_message().endswith("Error code 1011; Error publishing job at the backend queue. "
                                              "(emulated failure: job #1 is a multiple of fail_every=1 "
                                              "(qjm emulator fault injection))")
    with pytest.raises(RuntimeJobFailureError, match="Error code 1002; Error in the validation process"):
        permanent.result()
    again = service.job(transient.job_id())  # as another process would see it
    assert again.status() == "ERROR" and "Error code 1011;" in again.error_message()
    assert emu.stats()["failed_by_code"] == {"1011": 1, "1002": 1}


def test_batch_expiry_through_the_client(make_emulator: Callable[..., Emulator],
                                         runtime_service: Callable[[Emulator], Any]) -> None:
    """Running jobs of an expired batch finish, queued ones fail, and no job gets in any more:
    a live Batch is refused by the service, a re-attached one by the client itself."""
    from qiskit_ibm_runtime import Batch
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError
    from qiskit_ibm_runtime.executor_sampler import Sampler

    # The second post must land inside the batch's life, which starts when the first job runs:
    # 4 s leaves room for a loaded machine (2 cores under a parallel suite took over 1 s).
    emu = make_emulator(job_seconds=8.0, batch_ttl=4.0)
    emu.state.catalog.simulator(BACKEND)  # built now, not inside the first job's 8 s
    service = runtime_service(emu)
    backend = service.backend(BACKEND)
    isa = transpile(one_circuit(), backend, seed_transpiler=7)
    batch = Batch(backend=backend)
    sampler = Sampler(mode=batch)
    first = sampler.run([isa], shots=50)
    deadline = time.monotonic() + 30
    while (status := first.status()) != "RUNNING":  # the batch's clock starts with its first running job
        assert status == "QUEUED" and time.monotonic() < deadline, status
        time.sleep(0.02)
    second = sampler.run([isa], shots=50)
    assert second.status() == "QUEUED"

    second.wait_for_final_state(timeout=30)
    assert second.status() == "ERROR" and "expired" in second.error_message()
    counts = first.result()[0].data.c.get_counts()
    assert first.status() == "DONE" and max(counts, key=counts.get) == "1"
    assert batch.details()["state"] == "closed" and batch.status() == "Closed"

    with pytest.raises(IBMRuntimeError, match="Failed to run program"):
        sampler.run([isa], shots=50)  # this Batch object still thinks it is open: the service refuses
    reattached = Batch.from_id(batch.session_id, service)
    with pytest.raises(IBMRuntimeError, match="The session is closed."):
        Sampler(mode=reattached).run([isa], shots=50)
    stats = emu.stats()
    assert (stats["jobs_posted"], stats["sessions_expired"], stats["failed"], stats["completed"]) == (2, 1, 1, 1)


# ----- jobs simulated in a child process -----
def test_a_child_process_runs_jobs_as_the_emulator_itself_does(device_catalog: DeviceCatalog) -> None:
    """``python -m qjm.emulator`` simulates in a child process (``simulation``), so the service
    answers while a job simulates: the same results, record of what a job asked for and failure
    reasons as in-process, and a child that died is replaced for the next job."""
    apart = ServiceState(Faults(job_seconds=0.05), device_catalog, simulate_apart=True)
    here = ServiceState(Faults(job_seconds=0.05), device_catalog)
    try:
        child = apart.runner.child
        assert child is not None and here.runner.child is None
        child.wait_ready()
        seen = []
        for state in (apart, here):
            job_id = post(state, params=sampler_params(shots=40)).body["id"]
            assert wait_status(state, job_id, ("Completed", "Failed"))["status"] == "Completed"
            result = json.loads(call(state, "GET", f"/api/v1/jobs/{job_id}/results").text)
            counts = result["__value__"]["pub_results"][0]["__value__"]["data"]
            bad = post(state, params={"schema_version": "v1.0"}, program_id="executor").body["id"]
            end = wait_status(state, bad, ("Completed", "Failed"))
            seen.append((state.received(job_id), sorted(counts), end["status"], end["reason"]))
        assert seen[0] == seen[1] and seen[0][0]["pubs"] == 1 and seen[0][2] == "Failed", seen
        assert child._proc is not None
        child._proc.kill()
        child._proc.wait()
        again = post(apart, params=sampler_params(shots=40)).body["id"]
        assert wait_status(apart, again, ("Completed", "Failed"))["status"] == "Completed"
    finally:
        apart.stop()
        here.stop()
