"""The pinned qiskit-ibm-runtime still has what ``qjm.executors.ibm.client_patches`` relies on.

That module reaches into the client's private members and sets two environment variables the
client reads only from the process environment. Nothing in the client's public API promises any
of it, so these tests fail loudly, naming the member or variable that changed, when the client
is upgraded. Real client, real emulator, no mocks.
"""

from __future__ import annotations

import inspect
import re
import socket
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import qiskit_ibm_runtime
from qiskit_ibm_runtime import Batch, QiskitRuntimeService
from qiskit_ibm_runtime.ibm_backend import IBMBackend

from qjm.config import WORKER_CLIENT_ENV, settings, worker_env
from qjm.emulator import Emulator
from qjm.executors.ibm import client_patches
from qjm.executors.ibm.account import Account, backend_for, service_for

BACKEND = "ibm_manila"
CLIENT = f"qiskit-ibm-runtime {qiskit_ibm_runtime.__version__}"
FIX = "update qjm/executors/ibm/client_patches.py (and this test) to the new client"


def changed(what: str) -> str:
    return f"{CLIENT}: {what}; {FIX}"


def parameters(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def reads_env(fn: Any, name: str) -> bool:
    """Whether ``fn``'s source reads ``os.environ``/``os.getenv`` for ``name``."""
    pattern = rf"""(environ\.get\(|environ\[|getenv\()\s*["']{re.escape(name)}["']"""
    return re.search(pattern, inspect.getsource(fn)) is not None


@pytest.fixture
def account(emulator: Emulator, use_emulator: Callable[[Emulator], None]) -> Account:
    use_emulator(emulator)
    return Account.from_settings(settings())


@pytest.fixture
def no_egress(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Requests to anything but loopback go to a closed local port: refused at once, so a client
    that tries IBM Cloud fails fast and nothing leaves the machine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    # ``urlopen`` keeps the opener it built first, with the proxies of that moment: one built
    # here would send later tests' loopback requests to the closed port once NO_PROXY is gone.
    urllib.request.install_opener(None)
    yield
    urllib.request.install_opener(None)


# ----- the advisory checks qjm throttles -----
def test_advisory_checks_still_run_before_every_post() -> None:
    source = inspect.getsource(QiskitRuntimeService._run)
    assert f"self.{client_patches.SERVICE_ADVISORY_CHECK}()" in source, changed(
        f"QiskitRuntimeService._run no longer calls self.{client_patches.SERVICE_ADVISORY_CHECK}() before posting a job"
    )
    assert f"backend.{client_patches.BACKEND_ADVISORY_CHECK}()" in source, changed(
        f"QiskitRuntimeService._run no longer calls backend.{client_patches.BACKEND_ADVISORY_CHECK}() before posting a job"
    )


def test_advisory_check_methods_keep_their_shape() -> None:
    usage = getattr(QiskitRuntimeService, client_patches.SERVICE_ADVISORY_CHECK, None)
    assert inspect.isfunction(usage), changed(f"QiskitRuntimeService.{client_patches.SERVICE_ADVISORY_CHECK} is gone or no longer a method")
    assert parameters(usage) == ["self"], changed(
        f"QiskitRuntimeService.{client_patches.SERVICE_ADVISORY_CHECK} now takes {parameters(usage)}, not just self"
    )
    status = getattr(IBMBackend, client_patches.BACKEND_ADVISORY_CHECK, None)
    assert inspect.isfunction(status), changed(f"IBMBackend.{client_patches.BACKEND_ADVISORY_CHECK} is gone or no longer a method")
    assert parameters(status) == ["self"], changed(
        f"IBMBackend.{client_patches.BACKEND_ADVISORY_CHECK} now takes {parameters(status)}, not just self"
    )


def test_throttled_checks_cost_one_request(emulator: Emulator, account: Account) -> None:
    """Each unpatched check is one request; patched (per instance), repeated calls cost at most one."""
    service = service_for(account)
    backend = backend_for(account, BACKEND)
    for obj, method, owner in (
        (service, client_patches.SERVICE_ADVISORY_CHECK, "QiskitRuntimeService"),
        (backend, client_patches.BACKEND_ADVISORY_CHECK, "IBMBackend"),
    ):
        assert method in vars(obj), changed(f"{owner}.{method} cannot be shadowed on an instance (slots?)")
        before = emulator.stats()["requests"]
        getattr(type(obj), method)(obj)
        assert emulator.stats()["requests"] - before == 1, changed(f"{owner}.{method} no longer makes one request")
        before = emulator.stats()["requests"]
        answers = [getattr(obj, method)() for _ in range(3)]
        assert emulator.stats()["requests"] - before <= 1, f"qjm's throttle on {owner}.{method} does not hold"
        assert all(answer is answers[0] for answer in answers)


# ----- a batch without a look-up -----
def test_a_batch_handle_costs_no_request_and_posts_into_its_batch(emulator: Emulator, account: Account) -> None:
    """``batch_handle`` is the batch qjm opened, built from its id and backend alone: it makes no
    request, its posts land in that batch, and a post into the batch once it is closed is refused
    by the service in words ``errors`` reads as a closed batch (``Batch.from_id`` asked first)."""
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.executor_sampler import Sampler

    from qjm.errors import BatchClosedError
    from qjm.executors.ibm.errors import classify

    backend = backend_for(account, BACKEND)
    opened = Batch(backend=backend, max_time=60)
    assert isinstance(getattr(opened, client_patches.BATCH_SESSION_ID, None), str), changed(
        f"Batch no longer keeps its id in Batch.{client_patches.BATCH_SESSION_ID}")
    before = emulator.stats()["requests"]
    handle = client_patches.batch_handle(backend, opened.session_id)
    assert emulator.stats()["requests"] == before, changed("Batch(backend, create_new=False) makes a request")
    assert handle.session_id == opened.session_id, changed(
        f"Batch.session_id no longer reads Batch.{client_patches.BATCH_SESSION_ID}")
    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    isa = generate_preset_pass_manager(1, backend=backend).run(qc)
    job = Sampler(mode=handle).run([isa])
    assert emulator.state.job(job.job_id()).session_id == opened.session_id, "the handle's post is not in its batch"
    job.wait_for_final_state(timeout=30)
    opened.close()
    with pytest.raises(Exception) as refused:
        Sampler(mode=client_patches.batch_handle(backend, opened.session_id)).run([isa])
    assert isinstance(classify(refused.value, "a post into a closed batch"), BatchClosedError), refused.value


# ----- the client's scan of the call stack -----
def test_the_usage_opt_out_skips_the_stack_scan_and_keeps_the_header(
    emulator: Emulator, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request scans the call stack unless ``USAGE_DATA_OPT_OUT`` is ``True``; qjm's requests
    name no caller, so the header it sends is the same either way."""
    from qiskit_ibm_runtime.api import session as client_session

    name = "USAGE_DATA_OPT_OUT"
    assert name in WORKER_CLIENT_ENV
    assert client_session.USAGE_DATA_OPT_OUT_ENV_VAR == name, changed(
        f"the client's opt-out variable is now {client_session.USAGE_DATA_OPT_OUT_ENV_VAR}")
    scans: list[int] = []
    real_stack = client_session.inspect.stack
    monkeypatch.setattr(client_session.inspect, "stack", lambda *a, **k: scans.append(1) or real_stack(*a, **k))
    service = service_for(account)
    api_session = service._active_api_client._session

    def header() -> str:
        client_patches.listed_backend_names(service)  # one request
        return str(api_session.headers["X-Qx-Client-Application"])

    monkeypatch.setenv(name, "")  # remembers the original value, so what the test sets is undone
    monkeypatch.delenv(name)
    scanned = header()
    assert scans, changed(f"without {name} the client no longer scans the call stack (drop skip_caller_scan)")
    scans.clear()
    monkeypatch.setenv(name, worker_env({})[name])  # what a worker is started with
    assert header() == scanned and not scans, changed(f"with {name}=True the client still scans the stack or sends another header")
    monkeypatch.setenv(name, worker_env({name: "False"})[name])
    assert header() == scanned and scans, "a worker's start overrode a value the environment already had"


# ----- the raw backend listing -----
def test_active_api_client_lists_backends(account: Account) -> None:
    from qiskit_ibm_runtime.api.client import RuntimeClient

    service = service_for(account)
    name = client_patches.SERVICE_API_CLIENT
    api_client = getattr(service, name, None)
    assert isinstance(api_client, RuntimeClient), changed(f"QiskitRuntimeService.{name} is no longer a RuntimeClient ({api_client!r})")
    assert "include_mocks" in parameters(RuntimeClient.list_backends), changed(
        f"RuntimeClient.list_backends now takes {parameters(RuntimeClient.list_backends)}"
    )
    devices = api_client.list_backends()
    assert isinstance(devices, list) and all(isinstance(d, dict) and "name" in d for d in devices), changed(
        f"{name}.list_backends() no longer returns a list of dicts with a 'name'"
    )
    assert BACKEND in client_patches.listed_backend_names(service)


def test_jobs_are_posted_through_the_fenced_method() -> None:
    """The fence (``client_patches.fence_posts``) sits in front of ``program_run``: the service
    must still post every job through it."""
    from qiskit_ibm_runtime.api.client import RuntimeClient

    method = client_patches.API_PROGRAM_RUN
    assert inspect.isfunction(getattr(RuntimeClient, method, None)), changed(f"RuntimeClient.{method} is gone")
    source = inspect.getsource(QiskitRuntimeService._run)
    assert f"self.{client_patches.SERVICE_API_CLIENT}.{method}(" in source, changed(
        f"QiskitRuntimeService._run no longer posts jobs with self.{client_patches.SERVICE_API_CLIENT}.{method}()")


# ----- the two environment variables -----
def test_client_reads_the_two_variables_only_from_the_environment() -> None:
    from qiskit_ibm_runtime.accounts.account import Account as ClientAccount
    from qiskit_ibm_runtime.api.auth import CloudAuth

    iam = client_patches.ENV_IAM_URL
    flag = client_patches.ENV_SKIP_INSTANCE_LOOKUP
    assert reads_env(CloudAuth.__init__, iam), changed(f"CloudAuth (the API token exchange) no longer reads {iam} from the environment")
    assert reads_env(ClientAccount.get_iam_authentificator, iam), changed(
        f"Account.get_iam_authentificator no longer reads {iam} from the environment"
    )
    assert reads_env(ClientAccount.list_instances, flag), changed(
        f"Account.list_instances no longer skips the IBM Cloud look-up when {flag} is set"
    )
    offered = [p for p in parameters(QiskitRuntimeService.__init__) if "iam" in p.lower() or "experimental" in p.lower()]
    assert not offered, changed(f"QiskitRuntimeService now takes {offered}: pass them instead of setting the environment")


def test_without_the_flag_the_client_looks_the_instance_up_at_ibm_cloud(
    account: Account, no_egress: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pointed at the emulator with IAM_URL but not QISKIT_FUNCTIONS_EXPERIMENTAL, the client
    asks IBM Cloud Global Search for the instance and gives up."""
    from qiskit_ibm_runtime.accounts.exceptions import InvalidAccountError

    kwargs = account.service_kwargs()
    client_patches.point_client_at_emulator(kwargs["url"])
    monkeypatch.delenv(client_patches.ENV_SKIP_INSTANCE_LOOKUP)
    with pytest.raises(InvalidAccountError, match="retrieve instances"):
        QiskitRuntimeService(**kwargs)
        pytest.fail(changed(f"the client reached the emulator without {client_patches.ENV_SKIP_INSTANCE_LOOKUP}"))


def test_without_iam_url_the_token_exchange_goes_to_ibm_cloud(
    account: Account, no_egress: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without IAM_URL, the client asks IBM Cloud IAM for its access token, not the emulator
    (0.51 warns and falls back to the API key; an error naming IAM would say the same)."""
    kwargs = account.service_kwargs()
    client_patches.point_client_at_emulator(kwargs["url"])
    monkeypatch.delenv(client_patches.ENV_IAM_URL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            QiskitRuntimeService(**kwargs)
            raised = ""
        except Exception as exc:
            raised = str(exc)
    messages = [str(w.message) for w in caught] + [raised]
    assert any("iam.cloud.ibm.com" in m for m in messages), changed(
        f"without {client_patches.ENV_IAM_URL} the token exchange no longer goes to iam.cloud.ibm.com (said: {messages})"
    )


def test_with_both_variables_the_emulator_is_reached(account: Account) -> None:
    """The positive control of the two tests above: both set, the service is built and answers."""
    kwargs = account.service_kwargs()
    client_patches.point_client_at_emulator(kwargs["url"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        service = QiskitRuntimeService(**kwargs)
    assert not [w for w in caught if "access token" in str(w.message)]
    assert BACKEND in client_patches.listed_backend_names(service)


# ----- posting a prepared executor program -----
def test_executor_primitives_post_as_qjm_does() -> None:
    """``client_patches.post_executor_params`` repeats the end of ``Executor.run``: same program,
    same schema, posted with the mode's ``_run`` and the same runtime options."""
    from qiskit_ibm_runtime import Executor
    from qiskit_ibm_runtime.quantum_program import QuantumProgram

    from qjm.executors.ibm import primitives

    assert Executor._PROGRAM_ID == client_patches.EXECUTOR_PROGRAM_ID, changed(f"Executor posts program {Executor._PROGRAM_ID!r}")
    assert Executor._SCHEMA_VERSION == primitives.PARAMS_SCHEMA, changed(f"Executor posts params schema {Executor._SCHEMA_VERSION}")
    source = inspect.getsource(Executor.run)
    for needle in (f"_run = self._mode.{client_patches.MODE_RUN}", f"_run = self._service.{client_patches.MODE_RUN}",
                   'inputs = params.model_dump(mode="json")',
                   "options=to_runtime_options(self.options.environment, self._backend, max_execution_time)",
                   'calibration_id=getattr(self._backend, "calibration_id", None)'):
        assert needle in source, changed(f"Executor.run no longer contains {needle!r}")
    for cls in (Batch, QiskitRuntimeService):
        method = getattr(cls, client_patches.MODE_RUN, None)
        assert inspect.isfunction(method), changed(f"{cls.__name__}.{client_patches.MODE_RUN} is gone")
        assert {"program_id", "inputs", "options", "calibration_id", "dry_run"} <= set(parameters(method)), changed(
            f"{cls.__name__}.{client_patches.MODE_RUN} now takes {parameters(method)}")
    program = QuantumProgram(shots=1)
    assert hasattr(program, client_patches.PROGRAM_SEMANTIC_ROLE), changed(
        f"QuantumProgram has no {client_patches.PROGRAM_SEMANTIC_ROLE}")
    for module in ("executor_sampler.sampler", "executor_estimator.estimator"):
        run_source = inspect.getsource(__import__(f"qiskit_ibm_runtime.{module}", fromlist=["run"]))
        assert f"quantum_program.{client_patches.PROGRAM_SEMANTIC_ROLE} = " in run_source, changed(
            f"qiskit_ibm_runtime.{module} no longer sets the program's {client_patches.PROGRAM_SEMANTIC_ROLE}")


# ----- a job object without a look-up -----
def test_a_job_handle_costs_no_request_until_its_status(emulator: Emulator, account: Account) -> None:
    """``_decode_job`` builds the job object from its JSON alone; the handle then answers like
    the one ``service.job`` returns, with one request for its status."""
    service = service_for(account)
    assert inspect.isfunction(getattr(QiskitRuntimeService, client_patches.SERVICE_DECODE_JOB, None)), changed(
        f"QiskitRuntimeService.{client_patches.SERVICE_DECODE_JOB} is gone")
    assert parameters(getattr(QiskitRuntimeService, client_patches.SERVICE_DECODE_JOB)) == ["self", "raw_data"], changed(
        f"QiskitRuntimeService.{client_patches.SERVICE_DECODE_JOB} changed its parameters")
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.executor_sampler import Sampler

    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    backend = backend_for(account, BACKEND)
    posted = Sampler(mode=backend).run([generate_preset_pass_manager(1, backend=backend).run(qc)])
    before = emulator.stats()["requests"]
    handle = client_patches.job_handle(service, posted.job_id(), BACKEND, "executor")
    assert emulator.stats()["requests"] == before, "building a job handle made a request"
    assert handle.job_id() == posted.job_id() and handle.status() in ("QUEUED", "RUNNING", "DONE")
    assert emulator.stats()["requests"] == before + 1
    handle.wait_for_final_state(timeout=30)
    assert handle.status() == "DONE", handle.error_message()
    assert handle.result()[0].join_data().get_counts() == posted.result()[0].join_data().get_counts()


def test_a_status_answer_keeps_the_jobs_usage(emulator: Emulator, account: Account) -> None:
    """``RuntimeJobV2._set_status`` still takes every status answer: qjm keeps the usage and the
    service's estimate from it, so a final job's charge costs no request of its own."""
    from qiskit_ibm_runtime import RuntimeJobV2

    assert parameters(getattr(RuntimeJobV2, client_patches.JOB_SET_STATUS, None)) == ["self", "job_response"], changed(
        f"RuntimeJobV2.{client_patches.JOB_SET_STATUS} is gone or changed its parameters")
    from qiskit import QuantumCircuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime.executor_sampler import Sampler

    qc = QuantumCircuit(1, 1)
    qc.x(0)
    qc.measure(0, 0)
    backend = backend_for(account, BACKEND)
    job = client_patches.keep_status_answers(
        Sampler(mode=backend).run([generate_preset_pass_manager(1, backend=backend).run(qc)]))
    assert client_patches.keep_status_answers(job) is job  # idempotent
    job.wait_for_final_state(timeout=30)  # status requests until final: the last answer is kept
    assert job.status() == "DONE"
    answer = client_patches.last_status_answer(job)
    assert answer["usage"]["seconds"] == pytest.approx(job.usage()) and answer["usage"]["seconds"] > 0
    assert answer["estimate"] == pytest.approx(job.usage())
