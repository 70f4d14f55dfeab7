"""What placing a job of a set over several backends writes: its backend and width, the
backends the set used, a job moved with its circuits transpiled anew, and what the set waits for."""

from __future__ import annotations

from typing import Any

import redis

from . import keys
from .existing import ExistingHashes
from .records import USED_FIELD


class Placing:
    def __init__(self, r: redis.Redis, existing: ExistingHashes, ttl: int) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self.existing = existing
        self.ttl = ttl

    def circuits_qpy(self, sid: str, i: int) -> bytes | None:
        """The job's circuits as given, to transpile them anew."""
        return self.r.get(keys.circuits(sid, i))

    def note_set(self, sid: str, **fields: str) -> None:
        """Record facts about a set (e.g. what it waits for) without changing its status."""
        self.existing.set(keys.job_set(sid), fields)

    def mark_used(self, sid: str, backend: str) -> bool:
        """Note that a job of the set was placed on ``backend``: True for the one caller that
        noted it first (it lists the set under the backend, ``SetIndex.update``)."""
        return self.existing.set_new(keys.job_set(sid), f"{USED_FIELD}@{backend}", "1")

    def job_width(self, sid: str, i: int) -> int:
        """Qubits of the job's widest circuit, as recorded when it was placed."""
        return int(self.r.hget(keys.job(sid, i), "width") or 0)

    def retarget(self, sid: str, i: int, backend: str, isa: bytes) -> None:
        """Place an unposted job on another backend with its circuits transpiled for it, in one
        transaction (the job's keys share its set's slot): nobody reads new circuits under the
        old backend's name. The old backend's preparation goes with them."""
        p = self.r.pipeline(transaction=True)
        p.set(keys.isa(sid, i), isa, ex=self.ttl)
        p.delete(keys.prepared(sid, i))
        p.hset(keys.job(sid, i), "backend", backend)
        p.execute()
