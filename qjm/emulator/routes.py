"""The service's endpoints as plain functions of (state, request) -> reply.

No sockets here: the HTTP transport parses a ``Request``, calls ``dispatch`` and writes the
``Reply``, so every route (and the fault injection in front of them) can be called directly in
tests. Errors answer ``{"errors": [{code, message}]}`` as the service does.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .queues import ONLINE, queue_length
from .records import ServiceError
from .state import ServiceState
from .usage import session_elapsed

log = logging.getLogger("qjm.emulator")

API = "/api/v1"
#: The instance CRN clients get when they do not bring one (any CRN-shaped string is accepted).
DEFAULT_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/qjm-emulator:qjm-emulator::"


@dataclass(frozen=True)
class Request:
    """What a route sees of an HTTP request. ``headers`` have lower-case names; ``params`` are
    the named groups of the route's path pattern."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); bad JSON is the client's 400."""
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except json.JSONDecodeError as exc:
            raise ServiceError(400, f"Request body is not JSON: {exc}", 1208) from None
        return data if isinstance(data, dict) else {}

    @property
    def instance(self) -> str:
        return self.headers.get("service-crn") or DEFAULT_INSTANCE


@dataclass(frozen=True)
class Reply:
    """What a route returns: status, a JSON-able ``body`` or a ``text``, and extra headers."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None) -> Reply:
    body = {
        "errors": [{"code": code if code is not None else status, "message": message, "more_info": "qjm emulator"}],
        "trace": "qjm-emulator",
        "status_code": status,
    }
    return Reply(status, body, headers=headers or {})


# ----- token -----
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_jwt(lifetime: int = 3600) -> str:
    """An unsigned-looking JWT with ``iat``/``exp``: the client decodes it without verifying."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iat": now, "exp": now + lifetime, "sub": "qjm-emulator", "iam_id": "emulator"}).encode())
    return f"{header}.{payload}.{_b64(b'qjm-emulator-signature')}"


def token(state: ServiceState, request: Request) -> Reply:
    """``POST /identity/token``: the IAM token exchange, answered for any API key."""
    expires = 3600
    return Reply(200, {"access_token": fake_jwt(expires), "refresh_token": "not-used", "token_type": "Bearer",
                       "expires_in": expires, "expiration": int(time.time()) + expires, "scope": "ibm openid"})


def emulator_stats(state: ServiceState, request: Request) -> Reply:
    """``GET /emulator/stats``: what clients did, for tests and benchmarks (not an IBM endpoint)."""
    return Reply(200, state.stats())


def emulator_backend(state: ServiceState, request: Request) -> Reply:
    """``POST /emulator/backends/{name}`` ``{"status": "online" | "maintenance"}``: take a device
    down or bring it back mid-run; ``{"background": N}``: N more jobs of other users join its
    queue (not an IBM endpoint). Answers the device's state."""
    body, name = request.json(), request.params["name"]
    if "status" not in body and "background" not in body:
        raise ServiceError(400, 'give "status" ("online" or "maintenance") and/or "background" (a number of jobs)', 400)
    count = body.get("background", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:  # checked before anything changes
        raise ServiceError(400, f"background must be a number of jobs >= 0, not {count!r}", 400)
    if "status" in body:
        state.set_device_state(name, str(body["status"]))
    if count:
        state.add_background(name, count)
    return Reply(200, {"name": name, "status": state.device_state.get(name, ONLINE)})


def emulator_usage(state: ServiceState, request: Request) -> Reply:
    """``POST /emulator/usage`` ``{"limit": S}`` (null: unlimited): change the instance's allocation
    mid-run (not an IBM endpoint); answers the instance's usage as ``GET /instances/usage`` does."""
    limit = request.json().get("limit")
    if limit is not None and not isinstance(limit, (int, float)):
        raise ServiceError(400, f"limit must be a number of seconds or null, not {limit!r}", 400)
    state.set_usage_limit(None if limit is None else float(limit))
    return Reply(200, state.instance_usage(request.instance))


def emulator_received(state: ServiceState, request: Request) -> Reply:
    """``GET /emulator/jobs/{id}``: what a job asked for once it ran (options, items, gate counts)."""
    return Reply(200, state.received(request.params["id"]))


# ----- backends and instances -----
def _device(state: ServiceState, request: Request) -> str:
    name = request.params["name"]
    if state.catalog.get(name) is None:
        raise ServiceError(404, f"Backend {name} not found", 1216)
    return name


#: What ``GET /backends/{name}/status`` says of a device in maintenance (``status``/``message``),
#: and the reason the listing gives.
MAINTENANCE_MESSAGE = "The system is in maintenance: jobs queue and run when it is back online"


def list_backends(state: ServiceState, request: Request) -> Reply:
    """``GET /backends``: each device's ``name``, ``qubits``, ``queue_length`` and ``status``
    (``{"name": "online"}`` or not), what ``service.least_busy()`` reads; ``queue_length`` is
    the device's pending jobs, everyone's (``queues.queue_length``)."""
    names = state.catalog.names()
    qubits = {name: int(state.catalog.configuration(name).get("n_qubits", 0)) for name in names}
    with state.lock:
        devices = []
        for name in names:
            status = state.device_state.get(name, ONLINE)
            devices.append({"name": name, "qubits": qubits[name], "queue_length": queue_length(state.jobs, name),
                            "status": {"name": status, "reason": "" if status == ONLINE else MAINTENANCE_MESSAGE},
                            "class": "device", "is_simulator": False})
    return Reply(200, {"devices": devices})


def backend_configuration(state: ServiceState, request: Request) -> Reply:
    return Reply(200, state.catalog.configuration(_device(state, request)))


def backend_properties(state: ServiceState, request: Request) -> Reply:
    props = state.catalog.properties(_device(state, request))
    return Reply(200, props if props is not None else {})


def backend_defaults(state: ServiceState, request: Request) -> Reply:
    name = _device(state, request)
    return error(404, f"No pulse defaults for {name}", 1216)


def backend_status(state: ServiceState, request: Request) -> Reply:
    """``GET /backends/{name}/status``: ``state`` false and ``status`` "maintenance" while the
    device is in maintenance (the client's ``operational`` and ``status_msg``); ``length_queue``
    as in the listing (the client's ``pending_jobs``)."""
    name = _device(state, request)
    with state.lock:
        queue = queue_length(state.jobs, name)
        online = state.device_state.get(name, ONLINE) == ONLINE
    if online:
        return Reply(200, {"state": True, "status": "active", "message": "available", "length_queue": queue,
                           "backend_version": "1.0.0"})
    return Reply(200, {"state": False, "status": "maintenance", "message": MAINTENANCE_MESSAGE,
                       "length_queue": queue, "backend_version": "1.0.0"})


def usage(state: ServiceState, request: Request) -> Reply:
    """``GET /instances/usage``: consumed, limit (also as the allocation), remaining, reached."""
    return Reply(200, state.instance_usage(request.instance))


def instances(state: ServiceState, request: Request) -> Reply:
    return Reply(200, {"instances": [{"crn": request.instance, "name": "qjm-emulator", "plan": "open"}]})


# ----- sessions (batches) -----
def create_session(state: ServiceState, request: Request) -> Reply:
    return Reply(200, state.create_batch(request.instance, request.json()).to_json())


def get_session(state: ServiceState, request: Request) -> Reply:
    """``GET /sessions/{id}``, with ``elapsed_time`` (what ``batch.usage()`` reads; ``usage``)."""
    batch = state.batch(request.params["id"])
    with state.lock:
        return Reply(200, {**batch.to_json(), "elapsed_time": session_elapsed(batch, state.jobs)})


def patch_session(state: ServiceState, request: Request) -> Reply:
    if request.json().get("accepting_jobs") is False:
        state.close_batch(request.params["id"], cancel=False)
    else:
        state.batch(request.params["id"])
    return Reply(204)


def cancel_session(state: ServiceState, request: Request) -> Reply:
    state.close_batch(request.params["id"], cancel=True)
    return Reply(204)


# ----- jobs -----
def post_job(state: ServiceState, request: Request) -> Reply:
    job = state.submit(request.instance, request.json())
    return Reply(200, {"id": job.id, "backend": job.backend, "session_id": job.session_id})


def list_jobs(state: ServiceState, request: Request) -> Reply:
    return Reply(200, state.list_jobs(request.query, request.instance))


def get_job(state: ServiceState, request: Request) -> Reply:
    return Reply(200, state.job_status(request.params["id"]))


def delete_job(state: ServiceState, request: Request) -> Reply:
    state.delete(request.params["id"])
    return Reply(204)


def job_results(state: ServiceState, request: Request) -> Reply:
    return Reply(200, text=state.results(request.params["id"]))


def cancel_job(state: ServiceState, request: Request) -> Reply:
    state.cancel(request.params["id"])
    return Reply(204)


def job_metrics(state: ServiceState, request: Request) -> Reply:
    return Reply(200, state.metrics(request.params["id"]))


def job_logs(state: ServiceState, request: Request) -> Reply:
    return Reply(200, text=state.job(request.params["id"]).reason or "")


def job_tags(state: ServiceState, request: Request) -> Reply:
    tags = request.json().get("tags") or []
    state.set_tags(request.params["id"], [str(t) for t in tags])
    return Reply(204)


RouteFn = Callable[[ServiceState, Request], Reply]
_ID = r"(?P<id>[^/]+)"
_NAME = r"(?P<name>[^/]+)"

#: (method, path below ``/api/v1``, route); the first match wins.
ROUTES: list[tuple[str, re.Pattern[str], RouteFn]] = [
    (method, re.compile(f"^{pattern}$"), fn)
    for method, pattern, fn in [
        ("GET", "/backends", list_backends),
        ("GET", f"/backends/{_NAME}/configuration", backend_configuration),
        ("GET", f"/backends/{_NAME}/properties", backend_properties),
        ("GET", f"/backends/{_NAME}/status", backend_status),
        ("GET", f"/backends/{_NAME}/defaults", backend_defaults),
        ("GET", "/instances/usage", usage),
        ("GET", "/instances", instances),
        ("POST", "/sessions", create_session),
        ("GET", f"/sessions/{_ID}", get_session),
        ("PATCH", f"/sessions/{_ID}", patch_session),
        ("DELETE", f"/sessions/{_ID}/close", cancel_session),
        ("POST", "/jobs", post_job),
        ("GET", "/jobs", list_jobs),
        ("GET", f"/jobs/{_ID}", get_job),
        ("DELETE", f"/jobs/{_ID}", delete_job),
        ("GET", f"/jobs/{_ID}/results", job_results),
        ("POST", f"/jobs/{_ID}/cancel", cancel_job),
        ("GET", f"/jobs/{_ID}/metrics", job_metrics),
        ("GET", f"/jobs/{_ID}/logs", job_logs),
        ("PUT", f"/jobs/{_ID}/tags", job_tags),
    ]
]


_RECEIVED = re.compile(f"^/emulator/jobs/{_ID}$")
_DEVICE = re.compile(f"^/emulator/backends/{_NAME}$")


def _api(state: ServiceState, request: Request) -> Reply:
    """An ``/api/v1`` request: counted, then maybe refused by the injected faults (before it is
    acted on, so nothing is half done), else routed."""
    faults = state.faults
    state.count("requests")
    if state.dice.roll(faults.throttle):
        state.count("throttled")
        # The service sends Retry-After on throttled GETs; the client retries only those.
        headers = {"Retry-After": str(faults.retry_after)} if request.method in ("GET", "HEAD") else {}
        return error(429, "Too many requests: the rate limit was exceeded, retry later", 429, headers)
    if state.dice.roll(faults.server_errors):
        state.count("server_errors")
        return error(503, "Service temporarily unavailable (qjm emulator fault injection)", 503)
    sub = request.path[len(API):] or "/"
    for method, pattern, fn in ROUTES:
        match = pattern.match(sub)
        if match and method == request.method:
            return fn(state, replace(request, params=match.groupdict()))
    return error(404, f"Not found: {request.method} {request.path}", 404)


def dispatch(state: ServiceState, request: Request) -> Reply:
    """The whole service: token exchange, emulator stats, the API; never raises."""
    try:
        if request.method == "POST" and request.path == "/identity/token":
            return token(state, request)
        if request.method == "GET" and request.path == "/emulator/stats":
            return emulator_stats(state, request)
        if request.method == "GET" and (match := _RECEIVED.match(request.path)):
            return emulator_received(state, replace(request, params=match.groupdict()))
        if request.method == "POST" and request.path == "/emulator/usage":
            return emulator_usage(state, request)
        if request.method == "POST" and (match := _DEVICE.match(request.path)):
            return emulator_backend(state, replace(request, params=match.groupdict()))
        if request.path == API or request.path.startswith(API + "/"):
            return _api(state, request)
        return error(404, f"Not found: {request.path}", 404)
    except ServiceError as exc:
        return error(exc.status, exc.message, exc.code)
    except Exception as exc:  # never let one request kill the emulator
        log.exception("emulator error on %s %s", request.method, request.path)
        return error(500, f"Emulator internal error: {type(exc).__name__}: {exc}", 500)
