"""Finding job sets without reading them all: one sorted set per name, tag, backend and status.
A set over several backends is listed under a backend once a job of it was placed there.

Each index maps job-set ids to their creation time, so "newest first" is a reverse range. A
query walks the smallest index that applies, a page at a time, and keeps the ids that every other
index holds too (one ``ZSCORE`` each), until it has ``limit`` of them: its cost follows the
number of sets returned (and skipped), not the number kept.

The indexes live outside the sets' hash slots, so they are written in a step of their own after
the set changed; ``repair`` (run by the reconciler) puts right what a crash in between left.
Sets leave when their keys expire: ``SETS_EXPIRY`` holds each set's expiry time, and every query
first drops the ids whose time has passed (a bounded batch), using what ``SETS_ENTRIES`` says
the set was listed under. No keyspace notifications are needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis

from . import keys
from .records import JobSetRecord

#: Expired ids dropped per query at most, so one query never pays for a large backlog.
PRUNE_BATCH = 200


@dataclass(frozen=True)
class Entry:
    """What one set is listed under."""

    name: str | None
    backend: str
    status: str
    created: float
    tags: list[str] = field(default_factory=list)
    #: A set over several backends is listed under those a job of it was placed on
    #: (``JobSetRecord.used``), from the first placement there on; a set of one backend, under it.
    backends: list[str] = field(default_factory=list)
    fans_out: bool = False

    @classmethod
    def of(cls, rec: JobSetRecord) -> Entry:
        return cls(rec.name, rec.backend, rec.status.value, rec.created, list(rec.tags), list(rec.used), rec.fans_out)

    def listed_under(self) -> list[str]:
        # An entry written before qjm noted the backends used lists a fanned-out set under every one.
        return self.backends if self.fans_out else self.backends or [self.backend]

    def index_keys(self) -> list[str]:
        out = [keys.INDEX, *(keys.sets_by("backend", b) for b in self.listed_under()),
               keys.sets_by("status", self.status)]
        if self.name is not None:
            out.append(keys.sets_by("name", self.name))
        return out + [keys.sets_by("tag", t) for t in dict.fromkeys(self.tags)]


def filter_keys(name: str | None = None, tags: Iterable[str] | None = None, backend: str | None = None,
                status: str | None = None) -> list[str]:
    """The indexes a query must find an id in (all sets when no filter is given)."""
    out = [keys.sets_by("name", name)] if name is not None else []
    out += [keys.sets_by("tag", t) for t in dict.fromkeys(tags or ())]
    if backend is not None:
        out.append(keys.sets_by("backend", backend))
    if status is not None:
        out.append(keys.sets_by("status", status))
    return out or [keys.INDEX]


class SetIndex:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)

    # ------------------------------------------------------------------ writing
    def add(self, rec: JobSetRecord, expires: float, pipe: Any = None) -> None:
        """List a new set (into ``pipe`` if given, which the caller executes)."""
        p = pipe if pipe is not None else self.r.pipeline(transaction=False)
        self._write(p, rec.id, None, Entry.of(rec), expires)
        if pipe is None:
            p.execute()

    def entry(self, sid: str) -> Entry | None:
        raw = self.r.hget(keys.SETS_ENTRIES, sid)
        return Entry(**json.loads(raw)) if raw else None

    def update(self, rec: JobSetRecord, expires: float | None = None, **changes: Any) -> None:
        """Re-list a set whose name, tags or status changed (``changes`` override the record);
        a deleted set (one with a tombstone) stays out."""
        if self.r.exists(keys.tombstone(rec.id)):
            return
        old = self.entry(rec.id)
        new = replace(Entry.of(rec), **changes)
        if old is not None and old.fans_out and new.fans_out:
            # Backends used only grow: a record read before a placement keeps what it listed.
            new = replace(new, backends=[b for b in rec.candidates if b in old.backends or b in new.backends])
        p = self.r.pipeline(transaction=False)
        self._write(p, rec.id, old, new, expires)
        p.execute()

    def set_status(self, rec: JobSetRecord, status: str) -> None:
        self.update(rec, status=status)

    def remove(self, *sids: str) -> None:
        """Take sets out of every index (deleted, or expired), in two round trips."""
        if not sids:
            return
        entries = self.r.hmget(keys.SETS_ENTRIES, list(sids))
        p = self.r.pipeline(transaction=False)
        for sid, raw in zip(sids, entries, strict=True):
            for key in Entry(**json.loads(raw)).index_keys() if raw else [keys.INDEX]:
                p.zrem(key, sid)
            p.zrem(keys.SETS_EXPIRY, sid)
            p.zrem(keys.RUNNING, sid)
        p.hdel(keys.SETS_ENTRIES, *sids)
        p.execute()

    def _write(self, p: Any, sid: str, old: Entry | None, new: Entry, expires: float | None) -> None:
        stale = set(old.index_keys()) - set(new.index_keys()) if old else set()
        for key in stale:
            p.zrem(key, sid)
        for key in new.index_keys():
            p.zadd(key, {sid: new.created})
        p.hset(keys.SETS_ENTRIES, sid, json.dumps(asdict(new)))
        if expires is not None:
            p.zadd(keys.SETS_EXPIRY, {sid: expires})

    # ------------------------------------------------------------------ reading
    def prune(self, now: float | None = None, batch: int = PRUNE_BATCH) -> int:
        """Drop up to ``batch`` sets whose expiry time has passed; returns how many went.
        A set still there (its keys were renewed meanwhile) gets its real expiry instead."""
        now = time.time() if now is None else now
        due = [raw.decode() for raw in self.r.zrangebyscore(keys.SETS_EXPIRY, "-inf", now, start=0, num=batch)]
        if not due:
            return 0
        p = self.r.pipeline(transaction=False)
        for sid in due:
            p.pttl(keys.job_set(sid))
        gone = []
        for sid, pttl in zip(due, p.execute(), strict=True):
            if pttl is not None and pttl > 0:
                self.r.zadd(keys.SETS_EXPIRY, {sid: now + pttl / 1000})
            else:
                gone.append(sid)
        self.remove(*gone)
        return len(gone)

    def query(self, name: str | None = None, tags: Iterable[str] | None = None, backend: str | None = None,
              status: str | None = None, limit: int | None = None) -> list[str]:
        """Ids of the sets that match every filter given, newest first, at most ``limit``."""
        self.prune()
        wanted = filter_keys(name, tags, backend, status)
        p = self.r.pipeline(transaction=False)
        for key in wanted:
            p.zcard(key)
        sizes = p.execute()
        if min(sizes) == 0:
            return []
        driver = wanted[sizes.index(min(sizes))]
        others = [k for k in wanted if k != driver]
        page = max(50, 2 * (limit or 0))
        out: list[str] = []
        offset = 0
        while limit is None or len(out) < limit:
            ids = [raw.decode() for raw in self.r.zrevrange(driver, offset, offset + page - 1)]
            if not ids:
                break
            offset += len(ids)
            if others:
                p = self.r.pipeline(transaction=False)
                for sid in ids:
                    for key in others:
                        p.zscore(key, sid)
                scores = p.execute()
                n = len(others)
                ids = [sid for k, sid in enumerate(ids) if all(s is not None for s in scores[k * n:(k + 1) * n])]
            out.extend(ids)
        return out if limit is None else out[:limit]

    # ------------------------------------------------------------------ repair
    def repair(self, running: list[str]) -> int:
        """Put right what a crash between a set's change and its index update left: sets listed
        as RUNNING that are not (or are gone), and ``running`` sets (the reconciler's list) that
        were never listed. Costs one read per set listed or found running. Returns the fixes."""
        listed = [raw.decode() for raw in self.r.zrange(keys.sets_by("status", "RUNNING"), 0, -1)]
        ids = list(dict.fromkeys(listed + running))
        if not ids:
            return 0
        p = self.r.pipeline(transaction=False)
        for sid in ids:
            p.hgetall(keys.job_set(sid))
            p.hget(keys.SETS_ENTRIES, sid)
        answers = p.execute()
        fixed = 0
        for k, sid in enumerate(ids):
            h, raw = answers[2 * k], answers[2 * k + 1]
            if not h:
                if sid in listed:
                    self.remove(sid)
                    fixed += 1
                continue
            rec = JobSetRecord.from_hash(h)
            if raw is None or Entry(**json.loads(raw)) != Entry.of(rec):
                self.update(rec, expires=None if raw else time.time() + max(0, self.r.ttl(keys.job_set(sid))))
                fixed += 1
        return fixed
