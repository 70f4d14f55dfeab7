"""Backend executors: ``for_backend(name)`` picks and caches the one for a backend name."""

from __future__ import annotations

from functools import cache

from .base import Executor, JobWork, Poll, Primitive, RunOptions, Submission, SubmitContext
from .local import LocalExecutor, is_local, local_backend_names

__all__ = [
    "Executor", "JobWork", "Poll", "Primitive", "RunOptions", "SubmitContext", "Submission",
    "LocalExecutor", "for_backend", "is_local", "local_backend_names",
]


@cache
def for_backend(name: str) -> Executor:
    """One executor per backend name and process, so targets and clients are built once."""
    if is_local(name):
        return LocalExecutor(name)
    from .ibm import IBMQuantumExecutor  # imported lazily: it pulls in the HTTP client

    return IBMQuantumExecutor(name)
