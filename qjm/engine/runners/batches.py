"""A remote set's batches: one per backend it posts to, opened by its first post there (under a
Redis lock, so concurrent first posts open one) and closed once, when the set ends."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...errors import RetryLater
from ...executors import Executor
from ...store import JobSetRecord, Store
from ...store.records import batch_field
from .locks import kept, release_quietly

log = logging.getLogger(__name__)

#: Seconds a first submit waits for another delivery that is opening the set's batch.
BATCH_OPEN_WAIT = 2.0


class SetBatches:
    def __init__(self, store: Store) -> None:
        self.store = store

    def batch(self, rec: JobSetRecord, executor: Executor) -> str | None:
        """The set's batch id on the executor's backend, opening the batch if this is the set's
        first post there."""
        backend = executor.name
        if rec.batch_for(backend):
            return rec.batch_for(backend)
        lock = self.store.batch_lock(rec.id)
        # Opening takes one request: wait for it here (briefly) rather than come back through
        # Celery, which would start this job's slot a round trip late.
        if not lock.acquire(blocking=True, blocking_timeout=BATCH_OPEN_WAIT, sleep=0.01):
            raise RetryLater(f"the batch of {rec.id} is being opened by another delivery", 0.1)
        try:
            with kept(lock):
                current = self.store.job_set(rec.id)
                if current.batch_for(backend):
                    return current.batch_for(backend)
                batch_id = executor.open_batch(rec.id)
                if batch_id:
                    self.store.set_batch(rec.id, batch_id, batch_field(rec, backend))
                return self.store.job_set(rec.id).batch_for(backend)
        finally:
            release_quietly(lock)

    def drop(self, rec: JobSetRecord, backend: str) -> None:
        """Forget the set's batch on ``backend`` (the service closed it): the next post opens one."""
        batch_id = rec.batch_for(backend)
        if batch_id:
            self.store.drop_batch(rec.id, batch_id, batch_field(rec, backend))

    def close(self, rec: JobSetRecord, executor_for: Callable[[str], Executor]) -> None:
        """Close the set's batches (cancel them, if the set was cancelled), once."""
        batches = rec.all_batches
        if not batches or not self.store.claim_batch_close(rec.id):
            return
        for backend, batch_id in batches.items():
            try:
                executor_for(backend).close_batch(batch_id, cancel=rec.cancel_requested)
            except Exception as exc:  # noqa: BLE001 - an unclosed batch expires on the service by itself
                log.warning("closing batch %s of job set %s failed: %s", batch_id, rec.id, exc)
