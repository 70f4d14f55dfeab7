"""A backend's pending-job slots: at most N remote jobs pending at once, across every job set,
worker and host.

A slot is a lease held by a job (its ``keys.job_ref``): renewed by each poll, released exactly
once when the job is final, reclaimed when its holder stops renewing (a dead worker). Jobs that
find no free slot wait in a FIFO, and whoever frees a slot hands it to the longest-waiting job.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from . import keys, scripts


class SlotPool:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self._acquire = scripts.load(r, "acquire_slot")
        self._renew = scripts.load(r, "renew_slot")

    def acquire(self, backend: str, ref: str, limit: int, lease: float) -> bool:
        now = time.time()
        return bool(self._acquire(keys=[keys.slots(backend), keys.waiting(backend)],
                                  args=[ref, limit, repr(now + lease), repr(now)]))

    def renew(self, backend: str, ref: str, lease: float) -> bool:
        """Extend a held slot's lease; never re-creates a slot that was released."""
        return bool(self._renew(keys=[keys.slots(backend)], args=[ref, repr(time.time() + lease)]))

    def release(self, backend: str, ref: str) -> bool:
        """True only for the call that actually freed the slot."""
        return bool(self.r.hdel(keys.slots(backend), ref))

    def wait(self, backend: str, ref: str, since: float) -> int:
        """Queue a job for the next free slot, keeping its place if it already waits; returns how
        many jobs wait before it."""
        p = self.r.pipeline(transaction=False)
        p.zadd(keys.waiting(backend), {ref: since}, nx=True)
        p.zrank(keys.waiting(backend), ref)
        _, rank = p.execute()
        return int(rank or 0)

    def first_waiting(self, backend: str) -> str | None:
        """The longest-waiting job's ref, left in its place."""
        first = self.r.zrange(keys.waiting(backend), 0, 0)
        return first[0].decode() if first else None

    def next_waiting(self, backend: str) -> str | None:
        """Take the longest-waiting job's ref off the backend's waiting set."""
        popped = self.r.zpopmin(keys.waiting(backend))
        return popped[0][0].decode() if popped else None

    def free_for_newcomer(self, backend: str, limit: int) -> bool:
        """Whether a job that does not wait yet may take a slot now: one is free and no job waits
        for one (those come first)."""
        p = self.r.pipeline(transaction=False)
        p.hlen(keys.slots(backend))
        p.zcard(keys.waiting(backend))
        used, waiting = p.execute()
        return int(used) < limit and not int(waiting)

    def in_use(self, backend: str) -> int:
        return int(self.r.hlen(keys.slots(backend)))

    def live_leases(self) -> dict[str, int]:
        """Backend -> slots whose lease has not run out (for the metrics)."""
        now, out = time.time(), {}
        for key in self.r.scan_iter(match=keys.slots("*"), count=500):
            backend = key.decode().split("{slots:", 1)[1].rsplit("}", 1)[0]
            out[backend] = sum(1 for v in self.r.hvals(key) if float(v) > now)
        return out
