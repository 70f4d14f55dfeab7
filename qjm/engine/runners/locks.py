"""Locks a remote post holds: renewed while their holder works, released even when lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import redis.lock

log = logging.getLogger(__name__)


@contextmanager
def kept(lock: redis.lock.Lock) -> Iterator[None]:
    """Renew ``lock`` at a third of its timeout until the block ends, so a lock with a short
    timeout outlives a slow holder but not a dead one."""
    stop = threading.Event()
    every = (lock.timeout or 15) / 3

    def renew() -> None:
        while not stop.wait(every):
            try:
                lock.reacquire()
            except Exception:  # noqa: BLE001 - lost or expired: the holder's own release will say
                return

    renewer = threading.Thread(target=renew, name="qjm-posting-lock", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def release_quietly(lock: redis.lock.Lock) -> None:
    """Release a lock this delivery may have lost meanwhile (it expired while we were cut off)."""
    try:
        lock.release()
    except redis.lock.LockError:
        pass
    except redis.RedisError as exc:
        log.info("releasing %s failed: %s (it expires by itself)", lock.name, exc)


