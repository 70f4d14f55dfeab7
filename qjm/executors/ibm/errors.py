"""Client errors in qjm's words: ``RetryLater`` (wait and try again) or ``ExecutorError``.

The pipeline backs off on ``RetryLater`` instead of failing the job, so everything transient
must land there: HTTP 429, the pending-job limit (code 3458), 5xx and maintenance, an unreachable
service, and a backend listing the client failed and swallowed. Client exceptions never leave
the IBM executor unclassified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ...errors import BatchClosedError, ExecutorError, RetryLater, UnknownBackendError
from ..local import local_backend_names
from . import client_patches

T = TypeVar("T")

#: How the client and the service say a batch no longer takes jobs: the client's own check of a
#: re-attached batch, and the service's refusal of a post into a closed one.
_BATCH_CLOSED_RE = re.compile(r"[Tt]he session is closed|[Ss]ession \S+ is closed|no longer accepting jobs")
#: How a job failed by the end of its batch reads: queued jobs fail when the batch's maximum time
#: to live is reached. Such a job never ran, so it is posted again, in a new batch.
_BATCH_EXPIRED_RE = re.compile(r"(batch|session)\b.*\b(expired|maximum time to live|max(imum)? ttl)", re.IGNORECASE)


def ended_with_its_batch(error: str | None) -> bool:
    """Whether a failed job's error says its batch ended before it ran."""
    return bool(error and _BATCH_EXPIRED_RE.search(error))


#: Error code of the service's "You have reached the limit of N pending jobs" refusal.
PENDING_LIMIT_CODE = "3458"
#: How that code shows in the client's error text: in the JSON body or as "Error code: 3458".
_PENDING_LIMIT_RE = re.compile(rf'"code"\s*:\s*"?{PENDING_LIMIT_CODE}\b|[Ee]rror code:?\s*{PENDING_LIMIT_CODE}\b')


@dataclass(frozen=True)
class RetryDelays:
    """Seconds to wait after a 429 / a pending-limit refusal / an unreachable service."""

    throttled: float = 2.0
    pending_limit: float = 5.0
    unavailable: float = 10.0


DELAYS = RetryDelays()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes/contexts: the client often hides the HTTP error there."""
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
        if start == -1:
            continue
        try:
            body, _ = json.JSONDecoder().raw_decode(text[start:])
            messages = [f"{err.get('message')} (code {err.get('code')})" for err in body.get("errors", [])]
        except (ValueError, AttributeError):
            continue
        if messages:
            return "; ".join(messages)
    return str(exc)


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    for e in _chain(exc):
        if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        if "Max retries exceeded" in str(e) or "Connection refused" in str(e):
            return True
    return False


def classify(exc: BaseException, what: str, delays: RetryDelays = DELAYS) -> Exception:
    """Client exception -> ``RetryLater`` (throttled, pending limit, service unreachable) or ``ExecutorError``.

    A 429 surfaces either as ``status_code == 429`` or, once urllib3 exhausted its Retry-After
    retries, as a ``RetryError`` whose text says "too many 429 error responses".
    """
    text = " ".join(str(e) for e in _chain(exc))
    status = _status_code(exc)
    msg = service_message(exc)
    if status == 429 or "too many 429" in text or "429 Client Error" in text:
        return RetryLater(f"IBM Quantum throttled {what} (HTTP 429): {msg}", delays.throttled)
    if _PENDING_LIMIT_RE.search(text) or ("pending jobs" in text and "limit" in text):
        return RetryLater(f"IBM Quantum refused {what}: pending-job limit reached: {msg}", delays.pending_limit)
    if _BATCH_CLOSED_RE.search(text):
        return BatchClosedError(f"IBM Quantum refused {what}: the batch is closed: {msg}")
    maintenance = "maintenance mode" in text  # the client raises 503s without their status code
    if (status is not None and status >= 500) or maintenance or (status is None and _is_connection_error(exc)):
        return RetryLater(f"IBM Quantum unavailable during {what}: {msg}", delays.unavailable)
    return ExecutorError(f"IBM Quantum refused {what}: {msg}")


def call(fn: Callable[[], T], what: str, delays: RetryDelays = DELAYS) -> T:
    """Run one client call, translating its errors into qjm's."""
    try:
        return fn()
    except (RetryLater, ExecutorError):
        raise
    except Exception as exc:
        raise classify(exc, what, delays) from exc


def backend_not_found(service: Any, name: str, exc: BaseException, what: str, delays: RetryDelays = DELAYS) -> Exception:
    """Tell a truly unknown backend from a failed backend listing.

    The client swallows any error while listing backends (a 429 storm included) and then reports
    "No backend matches the criteria", on every submit too. So ask for the list once more,
    directly: if it cannot be had or holds the name, the failure was transient.
    """
    try:
        names = client_patches.listed_backend_names(service)
    except Exception as probe_exc:
        return RetryLater(f"IBM Quantum could not list backends during {what}: {service_message(probe_exc)}", delays.throttled)
    if name in names:
        return RetryLater(f"IBM Quantum backend listing failed transiently during {what}: {exc}", delays.throttled)
    return UnknownBackendError.unknown(name, [*names, *local_backend_names()],
                                       "IBM Quantum has no device of that name for this account")
