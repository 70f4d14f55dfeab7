"""IBMQuantumExecutor against the local IBM Quantum emulator, through the real client over HTTP.

Covers the remote verbs the pipeline relies on: batches, tagged submits, polling, fetching
results (stored as a counts set's records), de-duplication by tag, and the service's refusals (pending limit, 429 storms, failed
and cancelled jobs), checking the emulator's own counters of what the client did.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister, transpile
from qiskit.providers import JobStatus as QiskitJobStatus

from qjm.emulator import Emulator
from qjm.errors import ExecutorError, RetryLater, UnknownBackendError
from qjm.executors.base import JobWork, Poll, RunOptions, SubmitContext
from qjm.executors.ibm import IBMQuantumExecutor
from qjm.executors.ibm.executor import job_status
from qjm.formats import codec, outputs
from qjm.lifecycle import JobStatus, remote_status

BACKEND = "ibm_manila"
T = TypeVar("T")


def x02_circuit() -> QuantumCircuit:
    """X on qubits 0 and 2: reads '101' (hex 0x5) on almost every shot, even with noise."""
    qc = QuantumCircuit(3, 3, name="x02")
    qc.x(0)
    qc.x(2)
    qc.measure(range(3), range(3))
    return qc


def two_register_circuit() -> QuantumCircuit:
    """Registers a (q0) and b (q1, q2) with X on q1: a=0, b=01 -> joined value 0b010 = 0x2."""
    q = QuantumRegister(3, "q")
    a, b = ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
    qc = QuantumCircuit(q, a, b, name="two_regs")
    qc.x(q[1])
    qc.measure(q[0], a[0])
    qc.measure(q[1], b[0])
    qc.measure(q[2], b[1])
    return qc


def isa(executor: IBMQuantumExecutor, *circuits: QuantumCircuit) -> list[QuantumCircuit]:
    return transpile(list(circuits), executor.backend(), optimization_level=1, seed_transpiler=7)


def ctx_for(set_id: str, job: int, batch_id: str | None = None) -> SubmitContext:
    return SubmitContext(job_set_id=set_id, job=job, batch_id=batch_id, tags=[f"qjm:{set_id}", f"qjm:{set_id}:{job}"])


def work_of(circuits: list[QuantumCircuit], options: RunOptions) -> JobWork:
    return JobWork.from_circuits(circuits, options)


def records_of(executor: IBMQuantumExecutor, remote_id: str, work: JobWork) -> list[dict[str, Any]]:
    """A counts set's records of a fetched job, as the runner stores them (``qjm.formats.outputs``)."""
    return codec.loads(outputs.encode(executor.fetch(remote_id, work), work))


def retrying(fn: Callable[[], T], attempts: int = 40) -> T:
    """What the pipeline does with RetryLater, compressed: wait a little and call again."""
    for _ in range(attempts - 1):
        try:
            return fn()
        except RetryLater as exc:
            time.sleep(min(exc.delay, 0.2))
    return fn()


def wait_final(executor: IBMQuantumExecutor, remote_id: str, timeout: float = 60.0) -> Poll:
    deadline = time.monotonic() + timeout
    while True:
        poll = retrying(lambda: executor.poll(remote_id))
        if poll.status.final:
            return poll
        assert time.monotonic() < deadline, f"job {remote_id} still {poll.status} after {timeout}s"
        time.sleep(0.1)


def dominant(record: dict[str, Any]) -> int:
    counts = record["data"]["counts"]
    return int(max(counts, key=counts.get), 16)


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


# ----- the happy path -----
def test_setting_only_the_url_is_enough(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> None:
    use_emulator(emulator)
    assert "IAM_URL" not in os.environ
    executor = IBMQuantumExecutor(BACKEND)
    assert executor.local is False
    backend = executor.backend()
    assert backend.name == BACKEND and backend.num_qubits == 5
    assert executor.backend() is IBMQuantumExecutor(BACKEND).backend(), "backend is cached per process"


def test_batch_submit_poll_fetch(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> None:
    use_emulator(emulator)
    executor = IBMQuantumExecutor(BACKEND)
    before = emulator.stats()
    batch_id = executor.open_batch("setA")
    assert batch_id
    ctx = ctx_for("setA", 0, batch_id)
    circuits = isa(executor, x02_circuit(), two_register_circuit())
    options = RunOptions(shots=300, memory=True)

    remote_id = executor.submit(work_of(circuits, options), ctx).remote_id
    first = executor.poll(remote_id)
    assert first.status in (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.DONE)
    poll = wait_final(executor, remote_id)
    assert (poll.status, poll.error, poll.repost) == (JobStatus.DONE, None, False)
    # Its charge from the final status answer (2 s per job and 600 short shots), as the service estimated it.
    assert poll.charge is not None and 2.0 < poll.charge < 3.0 and poll.service_estimate == pytest.approx(poll.charge)

    records = records_of(executor, remote_id, work_of(circuits, options))
    assert [r["header"]["name"] for r in records] == ["x02", "two_regs"]
    assert all(r["shots"] == 300 and r["success"] for r in records)
    assert dominant(records[0]) == 5
    assert dominant(records[1]) == 2
    assert records[0]["header"]["creg_sizes"] == [["c", 3]]
    for record in records:
        assert sum(record["data"]["counts"].values()) == 300
        assert all(key.startswith("0x") for key in record["data"]["counts"])
        assert len(record["data"]["memory"]) == 300

    stats = emulator.stats()
    assert stats["jobs_posted"] - before["jobs_posted"] == 1
    assert stats["posts_by_tag"]["qjm:setA"] == 1 and stats["posts_by_tag"]["qjm:setA:0"] == 1
    assert stats["status_requests_by_job"][remote_id] >= 1
    assert stats["sessions_created"] - before["sessions_created"] == 1

    # the job really ran in the job set's batch, with the tags
    job = http_json(f"{emulator.url}/api/v1/jobs/{remote_id}")
    assert job["session_id"] == batch_id and job["tags"] == ctx.tags and job["program"]["id"] == "executor"

    executor.close_batch(batch_id)
    session = http_json(f"{emulator.url}/api/v1/sessions/{batch_id}")
    assert session["accepting_jobs"] is False
    assert emulator.stats()["sessions_closed"] - before["sessions_closed"] == 1
    with pytest.raises(ExecutorError):
        executor.submit(work_of(circuits, options), ctx_for("setA", 1, batch_id))


def test_parameter_sweeps_and_mixed_shots_keep_their_places(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> None:
    """Users dry-run their own primitives on the emulator: sweeps come back per parameter value,
    pubs keep their own shot counts, in both samplers the emulator serves."""
    import math

    from qiskit.circuit import Parameter
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.executor_sampler import Sampler

    use_emulator(emulator)
    backend = IBMQuantumExecutor(BACKEND).backend()
    theta = Parameter("theta")
    bell = QuantumCircuit(2, name="rx_bell")
    bell.rx(theta, 0)
    bell.cx(0, 1)
    bell.measure_all()
    one = QuantumCircuit(1, 1, name="one")
    one.x(0)
    one.measure(0, 0)
    sweep, fixed = transpile([bell, one], backend, optimization_level=1, seed_transpiler=7)

    def top(bits: Any) -> str:
        counts = bits.get_counts()
        return max(counts, key=counts.get)

    result = Sampler(mode=backend).run([(sweep, [[0.0], [math.pi], [0.0]]), fixed], shots=200).result()
    assert result[0].data.meas.shape == (3,) and result[0].data.meas.num_shots == 200
    assert [top(result[0].data.meas[k]) for k in range(3)] == ["00", "11", "00"]
    assert top(result[1].data.c) == "1"

    legacy = SamplerV2(mode=backend).run([(sweep, [[math.pi], [0.0]], 100), (fixed, None, 50)]).result()
    assert legacy[0].data.meas.num_shots == 100 and legacy[1].data.c.num_shots == 50
    assert [top(legacy[0].data.meas[k]) for k in range(2)] == ["11", "00"]
    assert top(legacy[1].data.c) == "1"


def test_each_further_post_is_a_single_request(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    """A freed slot is refilled with one POST: the client's advisory usage and backend-status
    checks run once, not before every job."""
    emu = make_emulator(job_seconds=0.2)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    batch_id = executor.open_batch("single")
    circuits = isa(executor, x02_circuit())
    executor.submit(work_of(circuits, RunOptions(shots=50)), ctx_for("single", 0, batch_id))
    before = emu.stats()
    ids = [executor.submit(work_of(circuits, RunOptions(shots=50)), ctx_for("single", k, batch_id)).remote_id for k in (1, 2, 3)]
    after = emu.stats()
    assert after["jobs_posted"] - before["jobs_posted"] == 3
    assert after["requests"] - before["requests"] == 3, "one request per post"
    assert all(wait_final(executor, remote_id).status is JobStatus.DONE for remote_id in ids)


def test_find_submitted_by_chunk_tag(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> None:
    use_emulator(emulator)
    executor = IBMQuantumExecutor(BACKEND)
    ctx = ctx_for("setB", 3)
    assert executor.find_submitted(ctx) is None
    circuits = isa(executor, x02_circuit())
    remote_id = executor.submit(work_of(circuits, RunOptions(shots=50)), ctx).remote_id
    # a fresh executor (another worker process, say) finds it too
    assert IBMQuantumExecutor(BACKEND).find_submitted(ctx) == remote_id
    assert executor.find_submitted(ctx_for("setB", 4)) is None
    assert executor.find_submitted(ctx_for("setC", 3)) is None
    assert wait_final(executor, remote_id).status == JobStatus.DONE
    assert executor.find_submitted(ctx) == remote_id, "a DONE job still counts as submitted"


def test_unknown_backend(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> None:
    use_emulator(emulator)
    with pytest.raises(UnknownBackendError):
        IBMQuantumExecutor("ibm_nowhere").backend()


def test_every_fake_device_is_offered(emulator: Emulator) -> None:
    names = {d["name"] for d in http_json(f"{emulator.url}/api/v1/backends")["devices"]}
    assert {"ibm_manila", "ibm_brisbane", "ibm_torino"} <= names and len(names) > 50
    conf = http_json(f"{emulator.url}/api/v1/backends/ibm_manila/configuration")
    assert conf["backend_name"] == "ibm_manila" and conf["n_qubits"] == 5


# ----- refusals and failures -----
def test_pending_limit_refusal_is_retry_later(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    # Jobs long enough to stay pending however slow this machine is; then cancelled to free the limit.
    emu = make_emulator(pending_limit=2, job_seconds=60.0)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    circuits = isa(executor, x02_circuit())
    ids = [executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setP", i)).remote_id for i in range(2)]
    with pytest.raises(RetryLater) as info:
        executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setP", 2))
    assert "pending" in str(info.value) and "3458" in str(info.value)
    for remote_id in ids:
        executor.cancel(remote_id)
        assert wait_final(executor, remote_id).status == JobStatus.CANCELLED
    third = executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setP", 2)).remote_id
    assert executor.poll(third).status in (JobStatus.SUBMITTED, JobStatus.RUNNING), "accepted once slots freed"
    executor.cancel(third)
    stats = emu.stats()
    assert stats["jobs_posted"] == 3 and stats["refused_pending_limit"] == 1 and stats["max_pending"] == 2


def test_throttle_storm_is_survived_with_retries(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    """Half of all API requests answered 429: GETs are retried by the client (Retry-After), the
    rest surfaces as RetryLater, never as ExecutorError, and a throttled POST creates no job."""
    emu = make_emulator(throttle=0.5, seed=11, job_seconds=0.2)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    retrying(executor.backend)  # cached from now on
    circuits = isa(executor, x02_circuit())
    options = RunOptions(shots=64)
    ctx = ctx_for("setT", 0)
    remote_id = retrying(lambda: executor.find_submitted(ctx) or executor.submit(work_of(circuits, options), ctx).remote_id)
    assert wait_final(executor, remote_id).status == JobStatus.DONE
    records = retrying(lambda: records_of(executor, remote_id, work_of(circuits, options)))
    assert dominant(records[0]) == 5
    stats = emu.stats()
    assert stats["throttled"] > 0
    assert stats["jobs_posted"] == 1, "a 429 on POST must not create a job"


def test_fail_every_reports_error_message(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    emu = make_emulator(fail_every=2, job_seconds=0.2)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    circuits = isa(executor, x02_circuit())
    ok, bad = (executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setF", i)).remote_id for i in range(2))
    assert wait_final(executor, ok).status == JobStatus.DONE
    poll = wait_final(executor, bad)
    assert poll.status == JobStatus.ERROR
    assert poll.error and "Emulated failure" in poll.error and "fail_every=2" in poll.error
    with pytest.raises(ExecutorError):
        executor.fetch(bad, work_of(circuits, RunOptions(shots=20)))
    assert emu.stats()["failed"] == 1
    # a failed job does not count as "already submitted": the chunk may be posted again
    assert executor.find_submitted(ctx_for("setF", 1)) is None


def test_cancel_reaches_the_service(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    emu = make_emulator(job_seconds=30.0)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    circuits = isa(executor, x02_circuit())
    remote_id = executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setX", 0)).remote_id
    assert executor.poll(remote_id).status == JobStatus.SUBMITTED
    executor.cancel(remote_id)
    assert IBMQuantumExecutor(BACKEND).poll(remote_id).status == JobStatus.CANCELLED
    executor.cancel(remote_id)  # already final: ignored
    assert emu.stats()["cancelled"] == 1


def test_cancelling_the_batch_cancels_its_jobs(make_emulator: Callable[..., Emulator], use_emulator: Callable[[Emulator], None]) -> None:
    emu = make_emulator(job_seconds=30.0)
    use_emulator(emu)
    executor = IBMQuantumExecutor(BACKEND)
    batch_id = executor.open_batch("setK")
    circuits = isa(executor, x02_circuit())
    ids = [executor.submit(work_of(circuits, RunOptions(shots=20)), ctx_for("setK", i, batch_id)).remote_id for i in range(2)]
    executor.close_batch(batch_id, cancel=True)
    assert [executor.poll(i).status for i in ids] == [JobStatus.CANCELLED] * 2
    stats = emu.stats()
    assert stats["cancelled"] == 2 and stats["sessions_cancelled"] == 1


def test_status_normalisation() -> None:
    assert remote_status("INITIALIZING") == JobStatus.SUBMITTED
    assert remote_status("DONE") == JobStatus.DONE
    assert remote_status(QiskitJobStatus.DONE) == JobStatus.DONE
    assert remote_status(QiskitJobStatus.ERROR) == JobStatus.ERROR
    assert remote_status(QiskitJobStatus.CANCELLED) == JobStatus.CANCELLED
    assert remote_status(QiskitJobStatus.RUNNING) == JobStatus.RUNNING
    assert remote_status("SOMETHING_ELSE") is None
    assert job_status("QUEUED") == JobStatus.SUBMITTED
    with pytest.raises(ExecutorError):
        job_status("SOMETHING_ELSE")


def test_refusal_classification() -> None:
    """How the client's submit errors map: the client wraps the HTTP error of POST /jobs as
    IBMRuntimeError("Failed to run program: ...") with the RequestsApiError as its context."""
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    from qjm.executors.ibm import classify

    def wrapped(status: int, code: int, message: str) -> Exception:
        body = json.dumps({"errors": [{"code": code, "message": message}]})
        try:
            try:
                raise RequestsApiError(f"{status} Client Error: for url: http://x/api/v1/jobs. {body}", status)
            except RequestsApiError as inner:
                raise IBMRuntimeError(f"Failed to run program: {inner}") from None
        except IBMRuntimeError as outer:
            return outer

    throttled = classify(wrapped(429, 429, "Too many requests"), "submit")
    assert isinstance(throttled, RetryLater)
    limited = classify(wrapped(400, 3458, "You have reached the limit of 3 pending jobs."), "submit")
    assert isinstance(limited, RetryLater) and "limit of 3 pending jobs" in str(limited)
    refused = classify(wrapped(400, 1208, "Request validation of body failed"), "submit")
    assert isinstance(refused, ExecutorError) and "Request validation of body failed (code 1208)" in str(refused)
    assert isinstance(classify(wrapped(502, 502, "Bad gateway"), "submit"), RetryLater)
