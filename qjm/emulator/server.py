"""A local emulator of the IBM Quantum Platform REST API that the real qiskit-ibm-runtime talks to.

Why: qjm's remote path (batches, tags, polling, pending limits, throttling, failures) must be
testable without IBM Quantum access, with the unmodified client library. The emulator serves the
IAM token exchange and the ``/api/v1`` endpoints the client uses, offers every fake device of
``qiskit_ibm_runtime.fake_provider`` as ``ibm_<name>``, and runs jobs on noisy Aer after they
waited ``job_seconds`` in the queue. Fault injection: ``pending_limit`` (code 3458 refusals),
``fail_every`` (every K-th job fails) and ``throttle`` (a fraction of requests answered 429).
``GET /emulator/stats`` reports what clients did, so tests can assert on it.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .devices import DeviceCatalog
from .state import ServiceError, ServiceState

log = logging.getLogger("qjm.emulator")

API = "/api/v1"
#: The instance CRN clients get when they do not bring one (any CRN-shaped string is accepted).
DEFAULT_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/qjm-emulator:qjm-emulator::"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_jwt(lifetime: int = 3600) -> str:
    """An unsigned-looking JWT with ``iat``/``exp``: the client decodes it without verifying."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iat": now, "exp": now + lifetime, "sub": "qjm-emulator", "iam_id": "emulator"}).encode())
    return f"{header}.{payload}.{_b64(b'qjm-emulator-signature')}"


Route = tuple[str, "re.Pattern[str]", str]

ROUTES: list[Route] = [
    ("GET", re.compile(r"^/backends$"), "list_backends"),
    ("GET", re.compile(r"^/backends/(?P<name>[^/]+)/configuration$"), "backend_configuration"),
    ("GET", re.compile(r"^/backends/(?P<name>[^/]+)/properties$"), "backend_properties"),
    ("GET", re.compile(r"^/backends/(?P<name>[^/]+)/status$"), "backend_status"),
    ("GET", re.compile(r"^/backends/(?P<name>[^/]+)/defaults$"), "backend_defaults"),
    ("GET", re.compile(r"^/instances/usage$"), "usage"),
    ("GET", re.compile(r"^/instances$"), "instances"),
    ("POST", re.compile(r"^/sessions$"), "create_session"),
    ("GET", re.compile(r"^/sessions/(?P<id>[^/]+)$"), "get_session"),
    ("PATCH", re.compile(r"^/sessions/(?P<id>[^/]+)$"), "patch_session"),
    ("DELETE", re.compile(r"^/sessions/(?P<id>[^/]+)/close$"), "cancel_session"),
    ("POST", re.compile(r"^/jobs$"), "post_job"),
    ("GET", re.compile(r"^/jobs$"), "list_jobs"),
    ("GET", re.compile(r"^/jobs/(?P<id>[^/]+)$"), "get_job"),
    ("DELETE", re.compile(r"^/jobs/(?P<id>[^/]+)$"), "delete_job"),
    ("GET", re.compile(r"^/jobs/(?P<id>[^/]+)/results$"), "job_results"),
    ("POST", re.compile(r"^/jobs/(?P<id>[^/]+)/cancel$"), "cancel_job"),
    ("GET", re.compile(r"^/jobs/(?P<id>[^/]+)/metrics$"), "job_metrics"),
    ("GET", re.compile(r"^/jobs/(?P<id>[^/]+)/logs$"), "job_logs"),
    ("PUT", re.compile(r"^/jobs/(?P<id>[^/]+)/tags$"), "job_tags"),
]


class Reply:
    """What a route returns: status, body (JSON-able, text or None) and extra headers."""

    def __init__(self, status: int = 200, body: Any = None, text: str | None = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.text = text
        self.headers = headers or {}


class EmulatorHandler(BaseHTTPRequestHandler):
    """Routes requests to ``ServiceState``; every error answers ``{"errors": [{code, message}]}``."""

    server: "EmulatorHTTPServer"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the body waits for the client's
    # delayed ACK (~40 ms a request), which would make the emulator, not qjm, the bottleneck.
    disable_nagle_algorithm = True
    server_version = "qjm-emulator/1"

    # ----- plumbing -----
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from stdlib
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, reply: Reply) -> None:
        if reply.text is not None:
            payload = reply.text.encode()
            ctype = "text/plain; charset=utf-8"
        elif reply.body is not None:
            payload = json.dumps(reply.body).encode()
            ctype = "application/json"
        else:
            payload = b""
            ctype = "application/json"
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if payload or reply.status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _error(self, status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None) -> Reply:
        body = {
            "errors": [{"code": code if code is not None else status, "message": message, "more_info": "qjm emulator"}],
            "trace": "qjm-emulator",
            "status_code": status,
        }
        return Reply(status, body, headers=headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        data = json.loads(raw)
        return data if isinstance(data, dict) else {}

    def _instance(self) -> str:
        return self.headers.get("Service-CRN") or DEFAULT_INSTANCE

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        state = self.server.state
        try:
            if self.command == "POST" and path == "/identity/token":
                self._body_discard()
                reply = self.token()
            elif self.command == "GET" and path == "/emulator/stats":
                reply = Reply(200, self.server.stats())
            elif path.startswith(API + "/") or path == API:
                with state.lock:
                    state.counters["requests"] += 1
                sub = path[len(API):] or "/"
                if self.server.should_throttle():
                    self._body_discard()
                    with state.lock:
                        state.counters["throttled"] += 1
                    headers = {"Retry-After": str(self.server.retry_after)} if self.command in ("GET", "HEAD") else {}
                    reply = self._error(429, "Too many requests: the rate limit was exceeded, retry later", 429, headers)
                elif self.server.should_fail():
                    self._body_discard()
                    with state.lock:
                        state.counters["server_errors"] += 1
                    reply = self._error(503, "Service temporarily unavailable (qjm emulator fault injection)", 503)
                else:
                    reply = self._route(sub, query)
            else:
                reply = self._error(404, f"Not found: {path}", 404)
        except ServiceError as exc:
            reply = self._error(exc.status, exc.message, exc.code)
        except json.JSONDecodeError as exc:
            reply = self._error(400, f"Request body is not JSON: {exc}", 1208)
        except Exception as exc:  # never let one request kill the emulator
            log.exception("emulator error on %s %s", self.command, self.path)
            reply = self._error(500, f"Emulator internal error: {type(exc).__name__}: {exc}", 500)
        self._send(reply)

    def _body_discard(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _route(self, sub: str, query: dict[str, list[str]]) -> Reply:
        for method, pattern, name in ROUTES:
            match = pattern.match(sub)
            if match and method == self.command:
                handler: Callable[..., Reply] = getattr(self, "r_" + name)
                return handler(query=query, **match.groupdict())
        self._body_discard()
        return self._error(404, f"Not found: {self.command} {API}{sub}", 404)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    # ----- token -----
    def token(self) -> Reply:
        expires = 3600
        return Reply(
            200,
            {
                "access_token": fake_jwt(expires),
                "refresh_token": "not-used",
                "token_type": "Bearer",
                "expires_in": expires,
                "expiration": int(time.time()) + expires,
                "scope": "ibm openid",
            },
        )

    # ----- backends -----
    def _device(self, name: str) -> str:
        if self.server.state.catalog.get(name) is None:
            raise ServiceError(404, f"Backend {name} not found", 1216)
        return name

    def r_list_backends(self, query: dict[str, list[str]]) -> Reply:
        state = self.server.state
        devices = []
        for name in state.catalog.names():
            devices.append({"name": name, "status": {"name": "online", "reason": ""}, "class": "device", "is_simulator": False})
        return Reply(200, {"devices": devices})

    def r_backend_configuration(self, query: dict[str, list[str]], name: str) -> Reply:
        return Reply(200, self.server.state.catalog.configuration(self._device(name)))

    def r_backend_properties(self, query: dict[str, list[str]], name: str) -> Reply:
        props = self.server.state.catalog.properties(self._device(name))
        return Reply(200, props if props is not None else {})

    def r_backend_defaults(self, query: dict[str, list[str]], name: str) -> Reply:
        self._device(name)
        return self._error(404, f"No pulse defaults for {name}", 1216)

    def r_backend_status(self, query: dict[str, list[str]], name: str) -> Reply:
        state = self.server.state
        self._device(name)
        with state.lock:
            queue = sum(1 for j in state.jobs.values() if j.backend == name and j.status in ("Queued", "Running"))
        return Reply(200, {"state": True, "status": "active", "message": "available", "length_queue": queue, "backend_version": "1.0.0"})

    def r_usage(self, query: dict[str, list[str]]) -> Reply:
        return Reply(
            200,
            {
                "instance_id": self._instance(),
                "plan_id": "emulator",
                "usage_consumed_seconds": 0,
                "usage_limit_seconds": None,
                "usage_allocation_seconds": None,
                "usage_limit_reached": False,
                "usage_remaining_seconds": None,
            },
        )

    def r_instances(self, query: dict[str, list[str]]) -> Reply:
        return Reply(200, {"instances": [{"crn": self._instance(), "name": "qjm-emulator", "plan": "open"}]})

    # ----- sessions / batches -----
    def r_create_session(self, query: dict[str, list[str]]) -> Reply:
        batch = self.server.state.create_batch(self._instance(), self._body())
        return Reply(200, batch.to_json())

    def r_get_session(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002 - route group name
        return Reply(200, self.server.state.batch(id).to_json())

    def r_patch_session(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        body = self._body()
        if body.get("accepting_jobs") is False:
            self.server.state.close_batch(id, cancel=False)
        else:
            self.server.state.batch(id)
        return Reply(204)

    def r_cancel_session(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        self.server.state.close_batch(id, cancel=True)
        return Reply(204)

    # ----- jobs -----
    def r_post_job(self, query: dict[str, list[str]]) -> Reply:
        job = self.server.state.submit(self._instance(), self._body())
        return Reply(200, {"id": job.id, "backend": job.backend, "session_id": job.session_id})

    def r_list_jobs(self, query: dict[str, list[str]]) -> Reply:
        return Reply(200, self.server.state.list_jobs(query, self._instance()))

    def r_get_job(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        state = self.server.state
        job = state.job(id)
        with state.lock:
            state.status_requests_by_job[id] += 1
            return Reply(200, job.to_json())

    def r_delete_job(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        state = self.server.state
        job = state.job(id)
        with state.lock:
            if job.status in ("Queued", "Running"):
                raise ServiceError(409, f"Job {id} is not in a final state", 1212)
            del state.jobs[id]
        return Reply(204)

    def r_job_results(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        return Reply(200, text=self.server.state.results(id))

    def r_cancel_job(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        self._body_discard()
        self.server.state.cancel(id)
        return Reply(204)

    def r_job_metrics(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        return Reply(200, self.server.state.metrics(id))

    def r_job_logs(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        job = self.server.state.job(id)
        return Reply(200, text=job.reason or "")

    def r_job_tags(self, query: dict[str, list[str]], id: str) -> Reply:  # noqa: A002
        tags = self._body().get("tags") or []
        self.server.state.set_tags(id, [str(t) for t in tags])
        return Reply(204)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The HTTP server plus the emulated state and the throttling dice."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ServiceState, throttle: float = 0.0, retry_after: int = 1,
                 seed: int | None = None, server_errors: float = 0.0):
        super().__init__(address, EmulatorHandler)
        self.state = state
        self.throttle = min(max(float(throttle or 0.0), 0.0), 1.0)
        #: Fraction of API requests answered 503 before they are acted on (nothing is half done).
        self.server_errors = min(max(float(server_errors or 0.0), 0.0), 1.0)
        self.retry_after = retry_after
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def should_throttle(self) -> bool:
        if self.throttle <= 0.0:
            return False
        with self._rng_lock:
            return self._rng.random() < self.throttle

    def should_fail(self) -> bool:
        if self.server_errors <= 0.0:
            return False
        with self._rng_lock:
            return self._rng.random() < self.server_errors

    def stats(self) -> dict[str, Any]:
        data = self.state.stats()
        data["throttle"] = self.throttle
        data["server_errors_rate"] = self.server_errors
        return data


class Emulator:
    """An emulator instance for tests and the CLI: ``start()`` serves in a background thread.

    ``port=0`` picks a free port; ``url`` is then the address to put in ``QISKIT_IBM_URL``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 5.0,
        pending_limit: int | None = None,
        fail_every: int = 0,
        throttle: float = 0.0,
        retry_after: int = 1,
        seed: int | None = None,
        catalog: DeviceCatalog | None = None,
        server_errors: float = 0.0,
    ) -> None:
        self.state = ServiceState(job_seconds=job_seconds, pending_limit=pending_limit, fail_every=fail_every, catalog=catalog)
        self.httpd = EmulatorHTTPServer((host, port), self.state, throttle=throttle, retry_after=retry_after, seed=seed,
                                        server_errors=server_errors)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def throttle(self) -> float:
        return self.httpd.throttle

    @throttle.setter
    def throttle(self, value: float) -> None:
        """Tests switch throttling on and off while the emulator runs."""
        self.httpd.throttle = min(max(float(value), 0.0), 1.0)

    def start(self) -> "Emulator":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="qjm-emulator-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.state.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        return self.httpd.stats()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    job_seconds: float = 5.0,
    pending_limit: int | None = None,
    fail_every: int = 0,
    throttle: float = 0.0,
    server_errors: float = 0.0,
    seed: int | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C). Binds to loopback unless told otherwise."""
    emulator = Emulator(host, port, job_seconds=job_seconds, pending_limit=pending_limit, fail_every=fail_every,
                        throttle=throttle, server_errors=server_errors, seed=seed)
    print(
        f"qjm IBM Quantum emulator on {emulator.url} ({len(emulator.state.catalog.names())} devices, "
        f"job_seconds={job_seconds}, pending_limit={pending_limit}, fail_every={fail_every}, throttle={throttle})\n"
        f"  export QISKIT_IBM_URL={emulator.url}",
        flush=True,
    )
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.httpd.server_close()
        emulator.state.stop()
