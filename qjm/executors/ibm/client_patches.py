"""Everything qjm does to qiskit-ibm-runtime beyond its public API, in one place.

The pinned client (0.51) gives no public way to do the things below that qjm needs, so this module, and
no other, reaches into it; ``tests/ibm/test_client_patches.py`` fails loudly, naming the member,
when a client upgrade moves any of them:

- ``QiskitRuntimeService._check_instance_usage`` and ``IBMBackend.status``: called by
  ``QiskitRuntimeService._run`` before *every* job it posts, only to print a warning. That is two
  extra requests between a freed slot and the next post, so qjm lets each run at most once per
  ``ADVISORY_CHECK_SECONDS`` per object (a per-instance attribute shadows the method).
- ``Batch._session_id``: a batch qjm knows (its id, its backend) is built as a client object
  without a request. ``Batch.from_id`` asks the service for the batch twice and builds its backend
  anew (a listing and, at its first post, a status check): four requests in the first post of
  each worker process, which made a set's second post wait on them.
- ``QiskitRuntimeService._active_api_client.list_backends()``: the raw backend listing, to tell an
  unknown backend from a listing the client failed and swallowed.
- ``RuntimeClient.program_run`` (on ``_active_api_client``): the request that posts a job. qjm
  puts a *fence* in front of it: a check, set per thread around one ``submit``, that stops the
  post when the worker lost its posting lock meanwhile (it was cut off, and another worker took
  over), however long the client's own requests before the post took.
- ``QuantumProgram._semantic_role``: which primitive's post-processing the client applies to an
  executor job's result. The executor primitives set it between preparing a program and posting
  it; qjm does the two in different steps (``primitives``), so it sets it the same way.
- ``Batch._run`` / ``QiskitRuntimeService._run``: what ``Executor.run`` posts a job with, right
  after it encoded the program. qjm posts the params it encoded in the transpile step the same
  way, so that a post does not encode again (about 0.2 s for 20 Estimator pubs).
- ``QiskitRuntimeService._decode_job``: builds a job object from the job's JSON. ``service.job(id)``
  is a ``GET /jobs/{id}`` whose answer only builds that object, which then asks again for its
  status; a worker process polling a job that another process posted paid two status requests
  for one answer. qjm builds the object from what it knows (id, backend, program) instead.
- ``RuntimeJobV2._set_status``: where a status request's answer (``GET /jobs/{id}``) ends up. The
  answer also carries the job's usage (``usage.seconds``, the service's JobResponse) and the
  service's estimate (``estimated_running_time_seconds``), which the client drops; qjm keeps
  them from the same answer (``keep_status_answers``), so a job's charge costs no request of its
  own when the service gives it there (else one metrics call, ``job.usage()``).
- ``IAM_URL`` and ``QISKIT_FUNCTIONS_EXPERIMENTAL``: the client reads them only from the process
  environment, so pointing it at an emulator means writing ``os.environ``.
- ``USAGE_DATA_OPT_OUT``: unless it is ``True``, every request the client makes walks the whole
  call stack with ``inspect.stack()`` (reading each frame's source) to name a calling Qiskit
  application in a header. A worker's requests come from qjm, which names none of them, so the
  header is the same either way; but in a Celery worker the walk took 20-30 ms per request, a
  post's or a status check's, which is most of a freed slot's hand-over. Workers are started with
  it (``qjm.config.WORKER_CLIENT_ENV``, unless their environment already says otherwise), and only
  workers: a user's own process keeps the client's default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cachetools import TTLCache, cached

#: Seconds an advisory check's answer is reused, per patched object.
ADVISORY_CHECK_SECONDS = 60.0

#: The service's advisory method (instance usage) and the backend's (its status).
SERVICE_ADVISORY_CHECK = "_check_instance_usage"
BACKEND_ADVISORY_CHECK = "status"
#: The job's method every status answer passes through, and where qjm keeps what it reads of it.
JOB_SET_STATUS = "_set_status"
JOB_LAST_ANSWER = "_qjm_status_answer"
#: Private attributes read or set here.
BATCH_SESSION_ID = "_session_id"
SERVICE_API_CLIENT = "_active_api_client"
#: The service's method that turns a job's JSON into a ``RuntimeJobV2``.
SERVICE_DECODE_JOB = "_decode_job"
#: The API client's method that posts a job.
API_PROGRAM_RUN = "program_run"
#: The attribute of a ``QuantumProgram`` naming the primitive whose post-processing applies.
PROGRAM_SEMANTIC_ROLE = "_semantic_role"
#: The method of a batch (or, in job mode, of the service) that posts a program's job.
MODE_RUN = "_run"
#: The program both executor primitives post (``Executor._PROGRAM_ID``).
EXECUTOR_PROGRAM_ID = "executor"
#: The environment variables the client reads for the token exchange and the instance look-up.
ENV_IAM_URL = "IAM_URL"
ENV_SKIP_INSTANCE_LOOKUP = "QISKIT_FUNCTIONS_EXPERIMENTAL"


def _throttle(obj: Any, method: str) -> Any:
    """Make ``obj.method`` answer from a one-entry TTL cache; idempotent per object."""
    if obj is None or method in vars(obj):  # already shadowed on this instance
        return obj
    bound = getattr(obj, method)
    throttled = cached(TTLCache(maxsize=1, ttl=ADVISORY_CHECK_SECONDS), key=lambda: (), lock=threading.Lock())(bound)
    setattr(obj, method, throttled)
    return obj


def throttle_service_checks(service: Any) -> Any:
    """The service's per-post instance-usage check, at most once a minute."""
    return _throttle(service, SERVICE_ADVISORY_CHECK)


def throttle_backend_checks(backend: Any) -> Any:
    """The backend's per-post status check, at most once a minute."""
    return _throttle(backend, BACKEND_ADVISORY_CHECK)


def batch_handle(backend: Any, batch_id: str) -> Any:
    """The client's ``Batch`` object for an open batch on ``backend``, built without a request
    (``Batch.from_id`` makes four). It posts with ``backend`` as given (so with its throttled
    status check); a batch the service closed meanwhile is refused at the post, as the service
    refuses any post into a closed batch."""
    from qiskit_ibm_runtime import Batch

    batch = Batch(backend=backend, create_new=False)
    setattr(batch, BATCH_SESSION_ID, batch_id)
    return batch


def listed_devices(service: Any) -> list[dict[str, Any]]:
    """The service's device listing right now (``GET /backends``: each device's name, qubits,
    queue length and status), bypassing the client's error swallowing and its per-service cache
    (``least_busy`` keeps its first listing for the life of the service object)."""
    return list(getattr(service, SERVICE_API_CLIENT).list_backends())


def listed_backend_names(service: Any) -> set[str]:
    """The backend names the service lists right now."""
    return {str(device.get("name")) for device in listed_devices(service)}


def set_semantic_role(program: Any, role: str) -> Any:
    """Mark an executor program as a primitive's (``sampler_v2``/``estimator_v2``), as its ``run`` does."""
    setattr(program, PROGRAM_SEMANTIC_ROLE, role)
    return program


def post_executor_params(mode: Any, params: dict[str, Any], options: Any) -> Any:
    """Post already encoded executor params (a ``ParamsModel`` as JSON values) with
    ``ExecutorOptions`` in ``mode`` (a batch or a backend), exactly as ``Executor.run`` ends;
    returns the client's job, whose result the client decodes as for its own posts."""
    from qiskit_ibm_runtime.base_primitive import get_mode_service_backend
    from qiskit_ibm_runtime.options_models.converters import to_runtime_options

    session, service, backend = get_mode_service_backend(mode)
    run = getattr(session if session is not None else service, MODE_RUN)
    max_execution_time = options.max_execution_time or options.environment.max_execution_time
    return run(
        program_id=EXECUTOR_PROGRAM_ID,
        options=to_runtime_options(options.environment, backend, max_execution_time),
        inputs=params,
        calibration_id=getattr(backend, "calibration_id", None),
        dry_run=False,
    )


_fence = threading.local()


def fence_posts(service: Any) -> Any:
    """Make the service's job post ask this thread's fence first (see ``fenced``); idempotent."""
    client = getattr(service, SERVICE_API_CLIENT)
    if API_PROGRAM_RUN in vars(client):
        return service
    post = getattr(client, API_PROGRAM_RUN)

    def fenced_post(*args: Any, **kwargs: Any) -> Any:
        check = getattr(_fence, "check", None)
        if check is not None:
            check()  # raises to stop the post
        return post(*args, **kwargs)

    setattr(client, API_PROGRAM_RUN, fenced_post)
    return service


@contextmanager
def fenced(check: Callable[[], None] | None) -> Iterator[None]:
    """Run the block with ``check`` called right before any job post this thread makes."""
    _fence.check = check
    try:
        yield
    finally:
        _fence.check = None


def job_handle(service: Any, job_id: str, backend_name: str, program_id: str) -> Any:
    """A job object for a job posted elsewhere, built without a request: its first ``status()``
    is then the only request, as for a job this process posted (an unknown id fails there)."""
    return getattr(service, SERVICE_DECODE_JOB)({"id": job_id, "backend": backend_name, "program": {"id": program_id}})


def keep_status_answers(job: Any) -> Any:
    """Make ``job`` keep the usage and the estimate of each status answer it gets; idempotent."""
    if JOB_SET_STATUS in vars(job):
        return job
    set_status = getattr(job, JOB_SET_STATUS)

    def kept(response: dict[str, Any]) -> Any:
        setattr(job, JOB_LAST_ANSWER, {"usage": response.get("usage"),
                                       "estimate": response.get("estimated_running_time_seconds")})
        return set_status(response)

    setattr(job, JOB_SET_STATUS, kept)
    return job


def last_status_answer(job: Any) -> dict[str, Any]:
    """What ``keep_status_answers`` kept of the job's last status answer (empty before one)."""
    return dict(getattr(job, JOB_LAST_ANSWER, None) or {})


def point_client_at_emulator(url: str) -> None:
    """Send the client's token exchange to ``url`` and skip its IBM Cloud instance look-up.

    Must run before a ``QiskitRuntimeService`` is built: the client reads both variables then.
    """
    os.environ[ENV_IAM_URL] = url
    os.environ[ENV_SKIP_INSTANCE_LOOKUP] = "1"
