"""Which IBM Quantum service to talk to, and the per-process client objects for it.

The account comes from ``qjm.config.Settings`` (the client's standard ``QISKIT_IBM_*``
variables); when nothing is set the client falls back to its saved account. When
``QISKIT_IBM_URL`` points at a qjm emulator (``python -m qjm.emulator``), the rest of what the
client needs (IAM address, experimental flag, URL resolver, a dummy token and instance) is
filled in here, so that URL alone is enough.

Whether a URL is an emulator is asked over HTTP, so it is asked lazily (when the first service
is built, never in a constructor) and once per URL and process. Services and backends are
expensive (several requests each) and shared by every executor of a worker process.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cachetools import LRUCache, cached

from ...config import Settings
from ...errors import ExecutorError, QJMError, RetryLater
from . import client_patches
from .errors import backend_not_found, call, classify

#: The instance the emulator is addressed with when none is configured (any CRN-shaped value works).
EMULATOR_INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/qjm-emulator:qjm-emulator::"
EMULATOR_TOKEN = "qjm-emulator"
EMULATOR_CHANNEL = "ibm_quantum_platform"
#: Seconds the emulator probe waits for an answer.
PROBE_TIMEOUT = 3.0


@lru_cache(maxsize=32)
def is_emulator(url: str) -> bool:
    """A qjm emulator answers ``GET /emulator/stats``; a loopback address is assumed to be one too."""
    url = url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/emulator/stats", timeout=PROBE_TIMEOUT) as resp:
            return "jobs_posted" in json.loads(resp.read() or b"{}")
    except Exception:
        host = urlsplit(url).hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def emulator_url_resolver(url: str, instance: str | None, private_endpoint: bool = False, channel: str | None = None) -> str:
    """The emulator serves the API under ``/api/v1`` of the address it was given."""
    return f"{url.rstrip('/')}/api/v1"


@dataclass(frozen=True)
class Account:
    """What identifies one ``QiskitRuntimeService``: the key of the per-process caches."""

    channel: str | None = None
    token: str | None = field(default=None, repr=False)
    instance: str | None = None
    url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Account:
        """No I/O here: executors are built eagerly, the emulator probe waits for first use."""
        url = settings.ibm_url.rstrip("/") if settings.ibm_url else None
        return cls(settings.ibm_channel, settings.ibm_token, settings.ibm_instance, url)

    @property
    def emulator(self) -> bool:
        """Whether the URL is a qjm emulator (probed once per URL and process)."""
        return bool(self.url) and is_emulator(self.url)

    def service_kwargs(self) -> dict[str, Any]:
        """``QiskitRuntimeService`` arguments; only what is set, so the client's own defaults apply."""
        kwargs: dict[str, Any] = {}
        emulator = self.emulator
        for key, value, emulator_default in (
            ("channel", self.channel, EMULATOR_CHANNEL),
            ("token", self.token, EMULATOR_TOKEN),
            ("instance", self.instance, EMULATOR_INSTANCE),
            ("url", self.url, None),
        ):
            value = value or (emulator_default if emulator else None)
            if value:
                kwargs[key] = value
        if emulator:
            kwargs["url_resolver"] = emulator_url_resolver
        return kwargs

    def redact(self, text: str) -> str:
        """``text`` without the token, for messages that may quote the client's."""
        return text.replace(self.token, "***") if self.token else text


def _redacted(account: Account, exc: QJMError) -> QJMError:
    message = account.redact(str(exc))
    if message == str(exc):
        return exc
    return RetryLater(message, exc.delay) if isinstance(exc, RetryLater) else ExecutorError(message)


@cached(LRUCache(maxsize=8), condition=threading.Condition())
def service_for(account: Account) -> Any:
    """The process-wide ``QiskitRuntimeService`` for an account, built once (one at a time)."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    kwargs = account.service_kwargs()
    if account.emulator and account.url:
        client_patches.point_client_at_emulator(account.url)
    try:
        service = call(lambda: QiskitRuntimeService(**kwargs), "connect to IBM Quantum")
    except QJMError as exc:
        raise _redacted(account, exc) from exc.__cause__
    return client_patches.fence_posts(client_patches.throttle_service_checks(service))


@cached(LRUCache(maxsize=64), condition=threading.Condition())
def backend_for(account: Account, name: str) -> Any:
    """The process-wide ``IBMBackend`` of that name (its target is what circuits are transpiled for)."""
    from qiskit.providers.exceptions import QiskitBackendNotFoundError

    service = service_for(account)
    what = f"backend look-up of {name}"
    try:
        backend = service.backend(name)
    except QiskitBackendNotFoundError as exc:
        raise backend_not_found(service, name, exc, what) from exc
    except Exception as exc:
        raise classify(exc, what) from exc
    return client_patches.throttle_backend_checks(backend)
