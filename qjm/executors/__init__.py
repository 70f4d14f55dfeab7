"""Backend executors: ``for_backend(name)`` picks and caches the one for a backend name."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from ..config import settings
from .base import Executor, JobWork, Poll, Primitive, RunOptions, Submission, SubmitContext
from .local import LocalExecutor, is_local, local_backend_names, local_qubits

__all__ = [
    "Executor", "JobWork", "Poll", "Primitive", "RunOptions", "SubmitContext", "Submission",
    "LocalExecutor", "for_backend", "is_local", "local_backend_names", "local_qubits", "remote_devices",
]


def for_backend(name: str) -> Executor:
    """One executor per backend name (and IBM account) and process, so targets and clients are
    built once. The account is read from the environment on each call: a process pointed at
    another service (``QISKIT_IBM_URL``) gets an executor for that one."""
    if is_local(name):
        return _local(name)
    cfg = settings()
    return _remote(name, (cfg.ibm_channel, cfg.ibm_token, cfg.ibm_instance, cfg.ibm_url))


@cache
def _local(name: str) -> Executor:
    return LocalExecutor(name)


@lru_cache(maxsize=64)
def _remote(name: str, account: tuple[str | None, ...]) -> Executor:
    from .ibm import IBMQuantumExecutor  # imported lazily: it pulls in the HTTP client

    return IBMQuantumExecutor(name, settings())


def remote_devices() -> list[dict[str, Any]] | None:
    """The service's devices (``ibm.list_devices``), or None when no IBM account is configured
    (no token, URL, instance or channel set): then qjm lists only its local backends."""
    cfg = settings()
    if not (cfg.ibm_token or cfg.ibm_url or cfg.ibm_instance or cfg.ibm_channel):
        return None
    from .ibm import Account, list_devices

    return list_devices(Account.from_settings(cfg))
