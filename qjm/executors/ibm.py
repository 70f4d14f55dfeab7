"""IBM Quantum executor: jobs posted with the real qiskit-ibm-runtime client, polled later.

Why this shape: a Celery worker must never block on a remote job, so ``submit`` only posts,
``poll`` only asks for the status, and ``fetch`` reads results of a job already DONE. Transient
refusals (HTTP 429, the pending-job limit, code 3458) become ``RetryLater`` so the pipeline backs
off instead of failing the chunk. The service and the backend are created once per worker process
and reused (module-level cache keyed by the account settings).

Configuration comes from the client's standard variables ``QISKIT_IBM_TOKEN``,
``QISKIT_IBM_INSTANCE``, ``QISKIT_IBM_CHANNEL``, ``QISKIT_IBM_URL`` or the saved account. When
``QISKIT_IBM_URL`` points at a qjm emulator (``python -m qjm.emulator``), the rest of what the
client needs (IAM address, experimental flag, URL resolver, a dummy instance) is set up here.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
import urllib.request
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from qiskit import QuantumCircuit
from qiskit.providers import BackendV2

from ..codec import records_from_primitive_result
from ..errors import ExecutorError, RetryLater, UnknownBackendError
from .base import Executor, Poll, RemoteState, RunOptions, Submission, SubmitContext

log = logging.getLogger(__name__)

#: The instance the emulator is addressed with when none is configured (any CRN-shaped value works).
EMULATOR_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/qjm-emulator:qjm-emulator::"
#: Error code of the service's "You have reached the limit of N pending jobs" refusal.
PENDING_LIMIT_CODE = "3458"
#: How that code shows in the client's error text: in the JSON body or as "Error code: 3458".
_PENDING_LIMIT_RE = re.compile(r'"code"\s*:\s*"?3458\b|[Ee]rror code:?\s*3458\b')

_STATUS_MAP = {
    "INITIALIZING": RemoteState.QUEUED,
    "VALIDATING": RemoteState.QUEUED,
    "QUEUED": RemoteState.QUEUED,
    "RUNNING": RemoteState.RUNNING,
    "DONE": RemoteState.DONE,
    "COMPLETED": RemoteState.DONE,
    "ERROR": RemoteState.ERROR,
    "FAILED": RemoteState.ERROR,
    "CANCELLED": RemoteState.CANCELLED,
}


def normalise_status(status: Any) -> RemoteState:
    """Client status (a string for remote jobs, a ``JobStatus`` enum for local ones) -> RemoteState."""
    name = getattr(status, "name", None) or str(status)
    name = name.rsplit(".", 1)[-1].strip().upper()
    try:
        return _STATUS_MAP[name]
    except KeyError:
        raise ExecutorError(f"unknown job status {status!r} from IBM Quantum") from None


# ----- account settings -----
@dataclass(frozen=True)
class AccountSettings:
    """What identifies one QiskitRuntimeService: the cache key of the per-process cache."""

    channel: str | None
    token: str | None
    instance: str | None
    url: str | None
    emulator: bool

    @classmethod
    def from_env(cls) -> "AccountSettings":
        url = os.environ.get("QISKIT_IBM_URL") or None
        emulator = bool(url) and is_emulator(url)
        token = os.environ.get("QISKIT_IBM_TOKEN") or None
        instance = os.environ.get("QISKIT_IBM_INSTANCE") or None
        channel = os.environ.get("QISKIT_IBM_CHANNEL") or None
        if emulator:
            token = token or "qjm-emulator"
            instance = instance or EMULATOR_INSTANCE
            channel = channel or "ibm_quantum_platform"
        return cls(channel, token, instance, url.rstrip("/") if url else None, emulator)


_probe_cache: dict[str, bool] = {}


def is_emulator(url: str) -> bool:
    """A qjm emulator answers ``GET /emulator/stats``; a loopback address is assumed to be one too."""
    url = url.rstrip("/")
    if url in _probe_cache:
        return _probe_cache[url]
    found = False
    try:
        with urllib.request.urlopen(f"{url}/emulator/stats", timeout=3) as resp:  # noqa: S310 - configured URL
            found = "jobs_posted" in json.loads(resp.read() or b"{}")
    except Exception:
        host = urlsplit(url).hostname or ""
        try:
            found = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            found = False
    _probe_cache[url] = found
    return found


def _emulator_url_resolver(url: str, instance: str | None, private_endpoint: bool = False, channel: str | None = None) -> str:
    """The emulator serves the API under ``/api/v1`` of the address it was given."""
    return f"{url.rstrip('/')}/api/v1"


#: The client checks the instance's usage and the backend's status before every job it posts,
#: only to print a warning. That is two requests on the path from a freed slot to the next post,
#: so qjm lets each check run at most once per this many seconds per worker process.
ADVISORY_CHECK_SECONDS = 60.0


def at_most_every(seconds: float, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` whose answer is reused for ``seconds``: for the client's advisory checks only."""
    lock = threading.Lock()
    last: list[Any] = [float("-inf"), None]

    def throttled() -> Any:
        with lock:
            if time.monotonic() - last[0] < seconds:
                return last[1]
        answer = fn()
        with lock:
            last[:] = [time.monotonic(), answer]
        return answer

    throttled.__wrapped__ = fn  # type: ignore[attr-defined]
    return throttled


def _relax_advisory_checks(obj: Any, method: str) -> Any:
    """Throttle ``obj.method`` (``QiskitRuntimeService._check_instance_usage``, ``IBMBackend.status``)
    on this one object, once."""
    current = getattr(obj, method, None)
    if current is not None and not hasattr(current, "__wrapped__"):
        setattr(obj, method, at_most_every(ADVISORY_CHECK_SECONDS, current))
    return obj


_cache_lock = threading.RLock()
_services: dict[AccountSettings, Any] = {}
_backends: dict[tuple[AccountSettings, str], Any] = {}
_batches: "OrderedDict[tuple[AccountSettings, str], Any]" = OrderedDict()


def get_service(settings: AccountSettings) -> Any:
    """The process-wide ``QiskitRuntimeService`` for these settings (created on first use)."""
    with _cache_lock:
        service = _services.get(settings)
        if service is not None:
            return service
        from qiskit_ibm_runtime import QiskitRuntimeService

        kwargs: dict[str, Any] = {}
        if settings.channel:
            kwargs["channel"] = settings.channel
        if settings.token:
            kwargs["token"] = settings.token
        if settings.instance:
            kwargs["instance"] = settings.instance
        if settings.url:
            kwargs["url"] = settings.url
        if settings.emulator:
            # The token exchange goes to the emulator too, and the experimental flag skips the
            # instance look-up through IBM Cloud Global Search, which the emulator cannot answer.
            os.environ["IAM_URL"] = settings.url or ""
            os.environ["QISKIT_FUNCTIONS_EXPERIMENTAL"] = "1"
            kwargs["url_resolver"] = _emulator_url_resolver
        try:
            service = _call(lambda: QiskitRuntimeService(**kwargs), "connect to IBM Quantum")
        except (RetryLater, ExecutorError):
            raise
        except Exception as exc:
            raise ExecutorError(f"cannot connect to IBM Quantum: {exc}") from exc
        _services[settings] = _relax_advisory_checks(service, "_check_instance_usage")
        return service


def _silence_client_deprecations() -> None:
    """The client's deprecation chatter is not actionable inside a worker: ignore it, once, for
    warnings attributed to the client or to this module (a process-wide filter is thread-safe,
    unlike ``catch_warnings`` around each call)."""
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"qiskit_ibm_runtime(\.|$)")
        warnings.filterwarnings("ignore", category=category, module=r"qjm\.executors\.ibm$")


_silence_client_deprecations()


# ----- error classification -----
def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _status_code(exc: BaseException) -> int | None:
    for e in _chain(exc):
        code = getattr(e, "status_code", None)
        if isinstance(code, int) and code > 0:
            return code
    return None


def service_message(exc: BaseException) -> str:
    """The most useful message of a client error: the service's own ``errors[].message`` if any."""
    for e in _chain(exc):
        text = str(e)
        start = text.find('{"errors"')
        if start != -1:
            try:
                body, _ = json.JSONDecoder().raw_decode(text[start:])
                messages = [f"{err.get('message')} (code {err.get('code')})" for err in body.get("errors", [])]
                if messages:
                    return "; ".join(messages)
            except (ValueError, AttributeError):
                pass
    return str(exc)


def classify(exc: BaseException, what: str) -> Exception:
    """Client exception -> ``RetryLater`` (throttled, pending limit, service unreachable) or ``ExecutorError``.

    A 429 surfaces either as ``status_code == 429`` or, once urllib3 exhausted its Retry-After
    retries, as a ``RetryError`` whose text says "too many 429 error responses".
    """
    text = " ".join(str(e) for e in _chain(exc))
    status = _status_code(exc)
    msg = service_message(exc)
    if status == 429 or "too many 429" in text or "429 Client Error" in text:
        return RetryLater(f"IBM Quantum throttled {what} (HTTP 429): {msg}", IBMQuantumExecutor.throttle_delay)
    if _PENDING_LIMIT_RE.search(text) or ("pending jobs" in text and "limit" in text):
        return RetryLater(f"IBM Quantum refused {what}: pending-job limit reached: {msg}", IBMQuantumExecutor.pending_limit_delay)
    maintenance = "maintenance mode" in text  # the client raises 503s without their status code
    if (status is not None and status >= 500) or maintenance or (status is None and _is_connection_error(exc)):
        return RetryLater(f"IBM Quantum unavailable during {what}: {msg}", IBMQuantumExecutor.unavailable_delay)
    return ExecutorError(f"IBM Quantum refused {what}: {msg}")


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    for e in _chain(exc):
        if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        if "Max retries exceeded" in str(e) or "Connection refused" in str(e):
            return True
    return False


def _call(fn: Callable[[], Any], what: str) -> Any:
    """Run one client call, translating its errors into qjm's (never leaks client exceptions)."""
    try:
        return fn()
    except (RetryLater, ExecutorError):
        raise
    except Exception as exc:
        raise classify(exc, what) from exc


class IBMQuantumExecutor(Executor):
    """One IBM Quantum backend (or emulated one), driven through the executor ``Sampler``."""

    local = False
    #: Seconds to wait after a 429 / a pending-limit refusal / an unreachable service.
    throttle_delay: float = 2.0
    pending_limit_delay: float = 5.0
    unavailable_delay: float = 10.0
    #: Lifetime of a job set's batch on the service; it is closed explicitly when the set ends.
    batch_max_ttl: int = 8 * 3600
    _job_cache_size = 256

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.settings = AccountSettings.from_env()
        self._jobs: "OrderedDict[str, Any]" = OrderedDict()
        self._jobs_lock = threading.Lock()

    # ----- shared objects -----
    @property
    def service(self) -> Any:
        return get_service(self.settings)

    def backend(self) -> BackendV2:
        key = (self.settings, self.name)
        with _cache_lock:
            cached = _backends.get(key)
        if cached is not None:
            return cached
        from qiskit.providers.exceptions import QiskitBackendNotFoundError

        service = self.service
        try:
            backend = service.backend(self.name)
        except QiskitBackendNotFoundError as exc:
            raise self._not_found(exc, f"backend look-up of {self.name}") from exc
        except Exception as exc:
            raise classify(exc, f"backend look-up of {self.name}") from exc
        with _cache_lock:
            return _backends.setdefault(key, _relax_advisory_checks(backend, "status"))

    def _not_found(self, exc: BaseException, what: str) -> Exception:
        """Tell a truly unknown backend from a failed backend listing.

        The client swallows any error while listing backends (a 429 storm included) and then
        reports "No backend matches the criteria", on every submit too. So ask for the list once
        more, directly: if it cannot be had or holds the name, the failure was transient.
        """
        try:
            names = {d.get("name") for d in self.service._active_api_client.list_backends()}
        except Exception as probe_exc:
            return RetryLater(f"IBM Quantum could not list backends during {what}: {service_message(probe_exc)}", self.throttle_delay)
        if self.name in names:
            return RetryLater(f"IBM Quantum backend listing failed transiently during {what}: {exc}", self.throttle_delay)
        return UnknownBackendError(f"IBM Quantum has no backend named {self.name!r} for this account")

    def _batch(self, session_id: str) -> Any:
        """Re-attach to a job set's batch without creating a new one (cached per process)."""
        from qiskit_ibm_runtime import Batch

        key = (self.settings, session_id)
        with _cache_lock:
            batch = _batches.get(key)
            if batch is not None:
                _batches.move_to_end(key)
                return batch
        batch = _call(lambda: Batch.from_id(session_id, self.service), f"re-attach to batch {session_id}")
        if getattr(batch, "_backend", None) is not None:  # the backend object its jobs are posted with
            _relax_advisory_checks(batch._backend, "status")
        with _cache_lock:
            _batches[key] = batch
            while len(_batches) > 64:
                _batches.popitem(last=False)
        return batch

    def _job(self, remote_id: str) -> Any:
        with self._jobs_lock:
            job = self._jobs.get(remote_id)
            if job is not None:
                self._jobs.move_to_end(remote_id)
                return job
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        try:
            job = self.service.job(remote_id)
        except RuntimeJobNotFound as exc:
            raise ExecutorError(f"IBM Quantum job {remote_id} not found") from exc
        except Exception as exc:
            raise classify(exc, f"look-up of job {remote_id}") from exc
        self._remember(job)
        return job

    def _remember(self, job: Any) -> None:
        with self._jobs_lock:
            self._jobs[job.job_id()] = job
            while len(self._jobs) > self._job_cache_size:
                self._jobs.popitem(last=False)

    # ----- sessions -----
    def open_session(self, job_set_id: str) -> str | None:
        from qiskit_ibm_runtime import Batch

        backend = self.backend()
        batch = _call(lambda: Batch(backend=backend, max_time=self.batch_max_ttl), f"opening a batch for {job_set_id}")
        session_id = batch.session_id
        with _cache_lock:
            _batches[(self.settings, session_id)] = batch
        return session_id

    def close_session(self, session_id: str, cancel: bool = False) -> None:
        batch = self._batch(session_id)
        if cancel:
            _call(batch.cancel, f"cancelling batch {session_id}")
        else:
            _call(batch.close, f"closing batch {session_id}")
        with _cache_lock:
            _batches.pop((self.settings, session_id), None)

    # ----- jobs -----
    def submit(self, circuits: list[QuantumCircuit], options: RunOptions, ctx: SubmitContext) -> Submission:
        from qiskit.providers.exceptions import QiskitBackendNotFoundError
        from qiskit_ibm_runtime.executor_sampler import Sampler

        mode = self._batch(ctx.session_id) if ctx.session_id else self.backend()
        sampler = Sampler(mode=mode)
        sampler.options.default_shots = options.shots
        sampler.options.environment.job_tags = list(ctx.tags)
        what = f"job submission ({ctx.job_set_id} chunk {ctx.chunk})"
        try:
            job = _call(lambda: sampler.run(list(circuits), shots=options.shots), what)
        except ExecutorError as exc:
            if isinstance(exc.__cause__, QiskitBackendNotFoundError):
                raise self._not_found(exc.__cause__, what) from exc
            raise
        self._remember(job)
        return Submission(remote_id=job.job_id())

    def find_submitted(self, ctx: SubmitContext) -> str | None:
        """The newest live-or-done job carrying the chunk tag; failed/cancelled ones do not count."""
        if not ctx.tags:
            return None
        tag = ctx.tags[-1]
        jobs = _call(lambda: self.service.jobs(job_tags=[tag], limit=20), f"job look-up by tag {tag}")
        for job in jobs:  # newest first
            state = normalise_status(_call(job.status, f"status of job {job.job_id()}"))
            if state in (RemoteState.ERROR, RemoteState.CANCELLED):
                continue
            self._remember(job)
            return job.job_id()
        return None

    def poll(self, remote_id: str) -> Poll:
        job = self._job(remote_id)
        state = normalise_status(_call(job.status, f"status of job {remote_id}"))
        error = None
        if state == RemoteState.ERROR:
            error = _call(job.error_message, f"error message of job {remote_id}") or "job failed"
        return Poll(state, error)

    def fetch(self, remote_id: str, circuits: list[QuantumCircuit], options: RunOptions) -> list[dict[str, Any]]:
        job = self._job(remote_id)
        state = normalise_status(_call(job.status, f"status of job {remote_id}"))
        if state != RemoteState.DONE:
            if not state.final:
                raise RetryLater(f"job {remote_id} is {state.value}, not DONE yet", self.throttle_delay)
            raise ExecutorError(f"job {remote_id} ended {state.value}; there are no results to fetch")
        result = _call(job.result, f"results of job {remote_id}")
        if len(result) != len(circuits):
            raise ExecutorError(f"job {remote_id} returned {len(result)} results for {len(circuits)} circuits")
        records = records_from_primitive_result(circuits, result, options.memory)
        with self._jobs_lock:
            self._jobs.pop(remote_id, None)
        return records

    def cancel(self, remote_id: str) -> None:
        """Best effort; a job already final (409) or unknown is fine. Retries 429s briefly."""
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        for attempt in range(3):
            try:
                self._job(remote_id).cancel()
                return
            except RuntimeInvalidStateError:  # already DONE/ERROR/CANCELLED
                return
            except ExecutorError as exc:  # unknown job: nothing to stop
                log.info("not cancelling %s: %s", remote_id, exc)
                return
            except RetryLater as exc:
                err: Exception = exc
            except Exception as exc:
                err = classify(exc, f"cancelling job {remote_id}")
                if not isinstance(err, RetryLater):
                    log.warning("cancelling %s failed: %s", remote_id, err)
                    return
            if attempt == 2:
                raise err
            time.sleep(min(getattr(err, "delay", 1.0), self.throttle_delay))
