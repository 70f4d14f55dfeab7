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

    def free_for(self, backend: str, ref: str, limit: int) -> bool:
        """Whether a job may take a slot now: one is free and no job waits before it (a job placed
        on a backend of a fanned-out set waits in its FIFO from its placement on)."""
        p = self.r.pipeline(transaction=False)
        p.hlen(keys.slots(backend))
        p.zcard(keys.waiting(backend))
        p.zrank(keys.waiting(backend), ref)
        used, waiting, rank = p.execute()
        return int(used) < limit and (not int(waiting) or rank == 0)

    def in_use(self, backend: str) -> int:
        return int(self.r.hlen(keys.slots(backend)))

    def in_use_many(self, backends: list[str]) -> dict[str, int]:
        """Backend -> slots held, in one round trip (local names read 0)."""
        p = self.r.pipeline(transaction=False)
        for backend in backends:
            p.hlen(keys.slots(backend))
        return {b: int(n) for b, n in zip(backends, p.execute(), strict=True)}

    def loads(self, backends: list[str], ref: str | None = None) -> dict[str, tuple[int, int, int | None]]:
        """Backend -> (slots held, jobs waiting, ``ref``'s place among them or None), one round trip."""
        p = self.r.pipeline(transaction=False)
        for backend in backends:
            p.hlen(keys.slots(backend))
            p.zcard(keys.waiting(backend))
            p.zrank(keys.waiting(backend), ref or "")
        raw = p.execute()
        return {b: (int(raw[3 * k]), int(raw[3 * k + 1]), None if raw[3 * k + 2] is None else int(raw[3 * k + 2]))
                for k, b in enumerate(backends)}

    def move_waiter(self, old: str, new: str, ref: str, since: float) -> None:
        """A job placed anew: out of one backend's FIFO, into another's at its first wait's time."""
        self.r.zrem(keys.waiting(old), ref)
        self.r.zadd(keys.waiting(new), {ref: since})

    def live_leases(self) -> dict[str, int]:
        """Backend -> slots whose lease has not run out (for the metrics)."""
        now, out = time.time(), {}
        for key in self.r.scan_iter(match=keys.slots("*"), count=500):
            backend = key.decode().split("{slots:", 1)[1].rsplit("}", 1)[0]
            out[backend] = sum(1 for v in self.r.hvals(key) if float(v) > now)
        return out
