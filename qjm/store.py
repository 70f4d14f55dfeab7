"""The Redis store: the one owner of qjm's key schema and of every state transition.

Everything a job set is lives under ``qjm:set:<id>``; other modules never build a key or
write a status themselves. Transitions run as Lua scripts so that two workers (or a worker
and a ``cancel()``) racing on one chunk cannot move it backwards or out of a final state.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis

from . import codec
from .config import DAY, Settings, mask_url, settings as load_settings
from .errors import JobSetNotFoundError, StoreUnavailableError
from .polling import Estimate
from .status import FINAL, JobSetStatus, JobStatus


class Keys:
    """Key templates. Bump ``PREFIX`` to change the schema wholesale."""

    PREFIX = "qjm"
    INDEX = f"{PREFIX}:sets"  # sorted set: job-set id -> creation time

    @classmethod
    def job_set(cls, sid: str) -> str:
        return f"{cls.PREFIX}:set:{sid}"

    @classmethod
    def names(cls, sid: str) -> str:
        return f"{cls.PREFIX}:set:{sid}:names"

    @classmethod
    def combined(cls, sid: str) -> str:
        return f"{cls.PREFIX}:set:{sid}:result"

    @classmethod
    def final_channel(cls, sid: str) -> str:
        """Pub/sub channel on which a set's final status is announced once."""
        return f"{cls.PREFIX}:set:{sid}:final"

    @classmethod
    def chunk(cls, sid: str, i: int) -> str:
        return f"{cls.PREFIX}:set:{sid}:chunk:{i}"

    @classmethod
    def circuits(cls, sid: str, i: int) -> str:
        return f"{cls.PREFIX}:set:{sid}:chunk:{i}:circuits"

    @classmethod
    def isa(cls, sid: str, i: int) -> str:
        return f"{cls.PREFIX}:set:{sid}:chunk:{i}:isa"

    @classmethod
    def result(cls, sid: str, i: int) -> str:
        return f"{cls.PREFIX}:set:{sid}:chunk:{i}:result"

    @classmethod
    def posting_lock(cls, sid: str, i: int) -> str:
        return f"{cls.PREFIX}:set:{sid}:chunk:{i}:posting"

    @classmethod
    def session_lock(cls, sid: str) -> str:
        return f"{cls.PREFIX}:set:{sid}:session-lock"

    @classmethod
    def slots(cls, backend: str) -> str:
        """Hash: holder (``<set id>:<chunk>``) -> lease expiry, one field per pending remote job."""
        return f"{cls.PREFIX}:slots:{backend}"

    @classmethod
    def waiting(cls, backend: str) -> str:
        """Sorted set: holders waiting for a slot, by the time they started waiting (FIFO)."""
        return f"{cls.PREFIX}:slots:{backend}:waiting"

    @classmethod
    def durations(cls, backend: str) -> str:
        """Hash: ``mean``/``dev`` of how long the backend's recent jobs took (``qjm.polling``)."""
        return f"{cls.PREFIX}:durations:{backend}"


_RANK = {s.value: r for r, s in enumerate(JobStatus)}
_FINAL_NAMES = sorted(s.value for s in FINAL)

# KEYS[1] chunk hash, KEYS[2] optional result key; ARGV: new status, ttl, result or "", field/value pairs.
# Moves a chunk forward only; a final status never changes. Returns the status the chunk has after.
_ADVANCE = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return false end
local final = {DONE=true, ERROR=true, CANCELLED=true}
local rank = {QUEUED=0, TRANSPILING=1, SUBMITTED=2, RUNNING=3, DONE=4, ERROR=4, CANCELLED=4}
if final[cur] or rank[ARGV[1]] < rank[cur] then return cur end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if KEYS[2] and ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[2])) end
return ARGV[1]
"""

# KEYS[1] slot hash, KEYS[2] waiting set; ARGV: holder, limit, lease expiry, now.
# Expired leases (dead holders) are reclaimed first; a holder that has a slot keeps it.
_RENEW = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end
return 0
"""

_ACQUIRE = """
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < tonumber(ARGV[4]) and all[i] ~= ARGV[1] then redis.call('HDEL', KEYS[1], all[i]) end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS[1] durations hash; ARGV: observed seconds, weight of the new observation, ttl.
# Exponentially weighted mean and mean absolute deviation; the first observation sets the mean
# and a tenth of it as the deviation (no spread seen yet).
_DURATION = """
local x, a = tonumber(ARGV[1]), tonumber(ARGV[2])
local mean = tonumber(redis.call('HGET', KEYS[1], 'mean'))
local dev = tonumber(redis.call('HGET', KEYS[1], 'dev'))
if not mean then mean, dev = x, 0.1 * x
else dev = (1 - a) * dev + a * math.abs(x - mean); mean = (1 - a) * mean + a * x end
redis.call('HSET', KEYS[1], 'mean', tostring(mean), 'dev', tostring(dev))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
"""


@dataclass
class ChunkRecord:
    """One job of a set: experiments ``start`` to ``stop - 1`` of the set."""

    index: int
    start: int
    stop: int
    status: JobStatus
    remote_id: str | None = None
    error: str | None = None
    updated: float | None = None
    submitted_at: float | None = None
    post_attempted: float | None = None
    #: The job's age when a poll last found it still pending (a lower bound of its duration).
    seen_pending_age: float | None = None

    @classmethod
    def from_hash(cls, h: dict[bytes, bytes]) -> "ChunkRecord":
        g = lambda k: h.get(k.encode(), b"").decode() or None  # noqa: E731
        return cls(
            index=int(g("index") or 0),
            start=int(g("start") or 0),
            stop=int(g("stop") or 0),
            status=JobStatus(g("status")),
            remote_id=g("remote_id"),
            error=g("error"),
            updated=float(g("updated") or 0) or None,
            submitted_at=float(g("submitted_at") or 0) or None,
            post_attempted=float(g("post_attempted") or 0) or None,
            seen_pending_age=float(g("seen_pending_age") or 0) or None,
        )


@dataclass
class JobSetRecord:
    """The job set as stored: what was asked for and where it stands."""

    id: str
    name: str | None
    backend: str
    tags: list[str]
    created: float
    n_experiments: int
    chunk_bounds: list[tuple[int, int]]
    options: dict[str, Any]
    status: JobSetStatus = JobSetStatus.RUNNING
    session_id: str | None = None
    cancel_requested: bool = False
    finished: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_bounds)

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name or "",
            "backend": self.backend,
            "tags": codec.dumps(self.tags).decode(),
            "created": repr(self.created),
            "n_experiments": str(self.n_experiments),
            "chunk_bounds": codec.dumps(self.chunk_bounds).decode(),
            "options": codec.dumps(self.options).decode(),
            "status": self.status.value,
            "extra": codec.dumps(self.extra).decode(),
        }

    @classmethod
    def from_hash(cls, h: dict[bytes, bytes]) -> "JobSetRecord":
        g = lambda k: h.get(k.encode(), b"").decode()  # noqa: E731
        return cls(
            id=g("id"),
            name=g("name") or None,
            backend=g("backend"),
            tags=codec.loads(g("tags") or "[]"),
            created=float(g("created")),
            n_experiments=int(g("n_experiments")),
            chunk_bounds=[tuple(b) for b in codec.loads(g("chunk_bounds"))],
            options=codec.loads(g("options")),
            status=JobSetStatus(g("status")),
            session_id=g("session_id") or None,
            cancel_requested=g("cancel_requested") == "1",
            finished=float(g("finished")) if g("finished") else None,
            extra=codec.loads(g("extra") or "{}"),
        )


def new_job_set_id() -> str:
    return uuid.uuid4().hex


class Store:
    """Typed access to qjm's Redis state. Cheap to create; holds one connection pool."""

    def __init__(self, url: str | None = None, cfg: Settings | None = None) -> None:
        self.cfg = cfg or load_settings()
        self.url = url or self.cfg.redis_url
        self.r = redis.Redis.from_url(self.url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)
        self._advance = self.r.register_script(_ADVANCE)
        self._acquire = self.r.register_script(_ACQUIRE)
        self._renew = self.r.register_script(_RENEW)
        self._duration = self.r.register_script(_DURATION)

    @property
    def ttl(self) -> int:
        return self.cfg.ttl_seconds

    def ping(self) -> None:
        """Raise a qjm error that names the URL when Redis does not answer."""
        try:
            self.r.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise StoreUnavailableError(
                f"Cannot reach Redis at {mask_url(self.url)} ({exc}). Start Redis or set QJM_REDIS_URL to a reachable server."
            ) from exc

    # ----------------------------------------------------------------- creation
    def create_job_set(self, rec: JobSetRecord, chunk_qpy: list[bytes], names: list[str]) -> None:
        """Write a whole job set in one transaction: it exists completely or not at all."""
        ttl = self.ttl
        p = self.r.pipeline(transaction=True)
        p.hset(Keys.job_set(rec.id), mapping=rec.to_hash())
        p.expire(Keys.job_set(rec.id), ttl)
        p.set(Keys.names(rec.id), codec.dumps(names), ex=ttl)
        now = repr(time.time())
        for i, ((start, stop), blob) in enumerate(zip(rec.chunk_bounds, chunk_qpy)):
            ck = Keys.chunk(rec.id, i)
            p.hset(ck, mapping={"index": i, "start": start, "stop": stop, "status": JobStatus.QUEUED.value, "updated": now})
            p.expire(ck, ttl)
            p.set(Keys.circuits(rec.id, i), blob, ex=ttl)
        p.zadd(Keys.INDEX, {rec.id: rec.created})
        p.execute()

    # ----------------------------------------------------------------- reading
    def job_set(self, sid: str) -> JobSetRecord:
        h = self.r.hgetall(Keys.job_set(sid))
        if not h:
            raise JobSetNotFoundError(f"No job set with id {sid!r} in {self.url} (wrong id, other Redis, or expired).")
        return JobSetRecord.from_hash(h)

    def chunks(self, sid: str, n: int | None = None) -> list[ChunkRecord]:
        if n is None:
            n = self.job_set(sid).n_chunks
        p = self.r.pipeline(transaction=False)
        for i in range(n):
            p.hgetall(Keys.chunk(sid, i))
        return [ChunkRecord.from_hash(h) for h in p.execute()]

    def chunk(self, sid: str, i: int) -> ChunkRecord:
        h = self.r.hgetall(Keys.chunk(sid, i))
        if not h:
            raise JobSetNotFoundError(f"Job set {sid!r} has no job {i}.")
        return ChunkRecord.from_hash(h)

    def names(self, sid: str) -> list[str]:
        return codec.loads(self.r.get(Keys.names(sid))) or []

    def circuits_qpy(self, sid: str, i: int) -> bytes | None:
        return self.r.get(Keys.circuits(sid, i))

    def has_isa(self, sid: str, i: int) -> bool:
        return bool(self.r.exists(Keys.isa(sid, i)))

    def isa_qpy(self, sid: str, i: int) -> bytes | None:
        return self.r.get(Keys.isa(sid, i))

    def chunk_result(self, sid: str, i: int) -> list[dict[str, Any]] | None:
        return codec.loads(self.r.get(Keys.result(sid, i)))

    def combined_result(self, sid: str) -> dict[str, Any] | None:
        return codec.loads(self.r.get(Keys.combined(sid)))

    def job_set_ids(self) -> Iterator[str]:
        """Ids newest first; ids whose job set has expired are pruned on the way."""
        for raw in self.r.zrevrange(Keys.INDEX, 0, -1):
            sid = raw.decode()
            if self.r.exists(Keys.job_set(sid)):
                yield sid
            else:
                self.r.zrem(Keys.INDEX, sid)

    # ----------------------------------------------------------------- chunk transitions
    def advance(self, sid: str, i: int, status: JobStatus, *, result: list[dict[str, Any]] | None = None,
                **fields: Any) -> JobStatus:
        """Move chunk ``i`` forward to ``status`` (with fields, and its result if given).

        Returns the status the chunk has afterwards: ``status`` if the move happened, the
        existing status if the chunk was already final or further along.
        """
        argv: list[Any] = [status.value, self.ttl, codec.dumps(result) if result is not None else "", repr(time.time())]
        for k, v in fields.items():
            argv += [k, "" if v is None else str(v)]
        keys = [Keys.chunk(sid, i), Keys.result(sid, i)]
        out = self._advance(keys=keys, args=argv)
        if out is None:
            raise JobSetNotFoundError(f"Job set {sid!r} has no job {i} (expired?).")
        return JobStatus(out.decode() if isinstance(out, bytes) else out)

    def set_chunk_fields(self, sid: str, i: int, **fields: Any) -> None:
        """Record facts about a chunk (e.g. its remote id) without changing its status."""
        self.r.hset(Keys.chunk(sid, i), mapping={k: "" if v is None else str(v) for k, v in fields.items()})

    def store_isa(self, sid: str, i: int, blob: bytes) -> None:
        self.r.set(Keys.isa(sid, i), blob, ex=self.ttl)

    # ----------------------------------------------------------------- job-set transitions
    def posting_lock(self, sid: str, i: int) -> "redis.lock.Lock":
        """Held while one delivery looks for and posts a chunk's job; never waited for.

        It expires by itself after a minute (longer than a post takes even through the client's
        own retries), so a holder that died frees it; the chunk tag then tells the next delivery
        whether the job was posted."""
        return self.r.lock(Keys.posting_lock(sid, i), timeout=60, blocking=False)

    def session_lock(self, sid: str) -> "redis.lock.Lock":
        """Held while a set's batch is opened, so concurrent first submits open only one."""
        return self.r.lock(Keys.session_lock(sid), timeout=120, blocking_timeout=120)

    def claim_session_close(self, sid: str) -> bool:
        """True for the one caller that gets to close (or cancel) the set's batch."""
        return bool(self.r.hsetnx(Keys.job_set(sid), "session_closed", "1"))

    def set_session(self, sid: str, session_id: str) -> bool:
        """Record the set's remote batch once; returns False if another worker won the race."""
        return bool(self.r.hsetnx(Keys.job_set(sid), "session_id", session_id))

    def request_cancel(self, sid: str) -> list[ChunkRecord]:
        """Flag the set cancelled and move every unfinished chunk to CANCELLED.

        Returns the chunks that this call cancelled (their remote jobs need cancelling)."""
        rec = self.job_set(sid)
        self.r.hset(Keys.job_set(sid), "cancel_requested", "1")
        cancelled = []
        for ch in self.chunks(sid, rec.n_chunks):
            if not ch.status.final and self.advance(sid, ch.index, JobStatus.CANCELLED,
                                                     error="cancelled by user") is JobStatus.CANCELLED:
                cancelled.append(ch)
        return cancelled

    def finish(self, sid: str, status: JobSetStatus, combined: dict[str, Any], n_chunks: int) -> None:
        """Record the set's final state and combined result; per-chunk results are then redundant."""
        ttl = self.ttl
        p = self.r.pipeline(transaction=True)
        p.set(Keys.combined(sid), codec.dumps(combined), ex=ttl)
        p.hset(Keys.job_set(sid), mapping={"status": status.value, "finished": repr(time.time())})
        for i in range(n_chunks):
            p.delete(Keys.result(sid, i))
        p.publish(Keys.final_channel(sid), status.value)
        p.execute()

    @contextmanager
    def final_notice(self, sid: str) -> Iterator[Callable[[float], None]]:
        """Listen for the set's final status; yields ``pause(seconds)``, which returns early when
        it is announced. Subscribe first, then read the status, so the notice cannot slip by."""
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(Keys.final_channel(sid))
        try:
            yield lambda seconds: pubsub.get_message(timeout=max(0.0, seconds))
        finally:
            pubsub.close()

    # ----------------------------------------------------------------- remote-job slots
    def acquire_slot(self, backend: str, holder: str, limit: int, lease: float) -> bool:
        now = time.time()
        return bool(self._acquire(keys=[Keys.slots(backend), Keys.waiting(backend)],
                                  args=[holder, limit, repr(now + lease), repr(now)]))

    def wait_for_slot(self, backend: str, sid: str, i: int) -> float:
        """Queue a chunk for the next free slot; returns when it first started waiting."""
        key = Keys.chunk(sid, i)
        self.r.hsetnx(key, "waiting_since", repr(time.time()))
        since = float(self.r.hget(key, "waiting_since"))
        self.r.zadd(Keys.waiting(backend), {f"{sid}:{i}": since}, nx=True)
        return since

    def next_waiting(self, backend: str) -> tuple[str, int] | None:
        """Take the longest-waiting chunk off the backend's waiting set."""
        popped = self.r.zpopmin(Keys.waiting(backend))
        if not popped:
            return None
        sid, _, i = popped[0][0].decode().rpartition(":")
        return sid, int(i)

    def renew_slot(self, backend: str, holder: str, lease: float) -> bool:
        """Extend a held slot's lease; never re-creates a slot that was released."""
        return bool(self._renew(keys=[Keys.slots(backend)], args=[holder, repr(time.time() + lease)]))

    def release_slot(self, backend: str, holder: str) -> bool:
        """True only for the call that actually freed the slot."""
        return bool(self.r.hdel(Keys.slots(backend), holder))

    def slots_in_use(self, backend: str) -> int:
        return int(self.r.hlen(Keys.slots(backend)))

    # ----------------------------------------------------------------- job durations
    def record_duration(self, backend: str, seconds: float, weight: float = 0.3) -> None:
        """Fold one finished job's duration into the backend's estimate (kept a day after the last)."""
        self._duration(keys=[Keys.durations(backend)], args=[repr(seconds), repr(weight), DAY])

    def duration_estimate(self, backend: str) -> Estimate | None:
        """The backend's running estimate, or None before any of its jobs finished (or a day after)."""
        raw = self.r.hmget(Keys.durations(backend), "mean", "dev")
        if raw[0] is None or raw[1] is None:
            return None
        return Estimate(float(raw[0]), float(raw[1]))
