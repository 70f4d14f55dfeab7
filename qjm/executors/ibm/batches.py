"""A job set's batch on the service: opened once, then used by id from any worker process.

qjm knows a set's batch id and backend, so another process builds the client's object for it
without asking the service (``client_patches.batch_handle``); each process keeps the batches it
used in a small LRU cache. Batches are closed explicitly when the set ends (never with
``with Batch(...)``, which would close it when one submit returns).
"""

from __future__ import annotations

import threading
from typing import Any

from cachetools import LRUCache

from . import client_patches
from .account import Account
from .errors import call

#: Lifetime of a job set's batch on the service; it is closed explicitly when the set ends.
BATCH_MAX_TTL = 8 * 3600

_lock = threading.Lock()
_batches: LRUCache[tuple[Account, str], Any] = LRUCache(maxsize=64)


def open_batch(account: Account, backend: Any, job_set_id: str, max_ttl: int = BATCH_MAX_TTL) -> str:
    """Create a batch on ``backend`` for a job set; returns its id."""
    from qiskit_ibm_runtime import Batch

    batch = call(lambda: Batch(backend=backend, max_time=max_ttl), f"opening a batch for {job_set_id}")
    batch_id = batch.session_id
    with _lock:
        _batches[(account, batch_id)] = batch
    return batch_id


def attach(account: Account, batch_id: str, backend: Any) -> Any:
    """The batch with that id on ``backend`` (this process's ``IBMBackend``), without a request
    and without creating a new one."""
    key = (account, batch_id)
    with _lock:
        batch = _batches.get(key)
    if batch is not None:
        return batch
    batch = client_patches.batch_handle(backend, batch_id)
    with _lock:
        return _batches.setdefault(key, batch)


def close(account: Account, backend: Any, batch_id: str, cancel: bool = False) -> None:
    """Stop the batch accepting jobs (or cancel it, with its queued jobs)."""
    batch = attach(account, batch_id, backend)
    if cancel:
        call(batch.cancel, f"cancelling batch {batch_id}")
    else:
        call(batch.close, f"closing batch {batch_id}")
    with _lock:
        _batches.pop((account, batch_id), None)
