"""``Store``: typed access to qjm's Redis state and the one place job and job-set state changes.

Other modules never build a key (``keys``) or write a status themselves. A job's transitions
run as a Lua script (``scripts/advance.lua``) so that two workers, or a worker and a
``cancel()``, racing on one job cannot move it backwards or out of a final state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.lock

from ..config import Settings, mask_url
from ..config import settings as load_settings
from ..errors import JobSetNotFoundError, StoreUnavailableError
from ..formats import codec
from ..lifecycle import CANCELLED_BY_USER, FINAL_RANK, JobSetStatus, JobStatus, Step
from . import connection, keys, scripts
from .durations import Durations
from .existing import ExistingHashes
from .histograms import Histograms
from .index import SetIndex
from .outputs import Outputs
from .placing import Placing
from .records import BATCH_FIELD, JobRecord, JobSetRecord
from .slots import SlotPool
from .steps import Steps
from .usage import UsageBook


@dataclass(frozen=True)
class Move:
    """What ``Store.move`` did to a job."""

    status: JobStatus  # the job's status afterwards
    moved: bool  # whether this call moved it
    set_complete: bool  # whether this move made the set's last job final


class Store:
    """Cheap to create; holds one connection pool."""

    def __init__(self, url: str | None = None, cfg: Settings | None = None) -> None:
        self.cfg = cfg or load_settings()
        self.url = url or self.cfg.redis_url
        # redis-py types its answers as unions over sync and async clients; this client is sync
        # and binary, so answers are read as bytes. On a Redis Cluster it is a ``RedisCluster``.
        self.r: Any = connection.connect(self.url, self.cfg.redis_cluster)
        self.cluster = self.cfg.redis_cluster
        self._advance = scripts.load(self.r, "advance")
        self._finish = scripts.load(self.r, "finish")
        self._new_attempt = scripts.load(self.r, "new_attempt")
        self._drop_batch = scripts.load(self.r, "drop_batch")
        self._relabel = scripts.load(self.r, "relabel")
        self.existing = ExistingHashes(self.r)
        self.slots = SlotPool(self.r)
        self.durations = Durations(self.r)
        self.histograms = Histograms(self.r)
        self.outputs = Outputs(self.r, self.ttl, self.cfg.result_chunk_bytes)
        self.placing = Placing(self.r, self.existing, self.ttl)
        self.steps = Steps(self.r, self.existing)
        self.index = SetIndex(self.r)
        self.usage = UsageBook(self.r)

    @property
    def ttl(self) -> int:
        return self.cfg.ttl_seconds

    @property
    def shown_url(self) -> str:
        """The URL with any password masked: the only form that goes into messages."""
        return mask_url(self.url)

    def ping(self) -> None:
        """Raise a qjm error that names the (masked) URL when Redis does not answer."""
        try:
            self.r.ping()
        except (redis.AuthenticationError, redis.AuthenticationWrongNumberOfArgsError) as exc:
            raise StoreUnavailableError(
                f"Redis at {self.shown_url} refused the password ({exc}): set QJM_REDIS_PASSWORD or "
                "QJM_REDIS_PASSWORD_FILE to Redis's requirepass.") from None
        except redis.ResponseError as exc:
            if not str(exc).startswith(("NOAUTH", "WRONGPASS")):
                raise
            raise StoreUnavailableError(
                f"Redis at {self.shown_url} asks for a password ({exc}): set QJM_REDIS_PASSWORD or "
                "QJM_REDIS_PASSWORD_FILE to Redis's requirepass.") from None
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException, OSError) as exc:
            raise StoreUnavailableError(
                f"Cannot reach Redis at {self.shown_url} ({exc}). Start Redis or set "
                "QJM_REDIS_URL to a reachable server.") from None

    def run_id(self, sid: str | None = None) -> str:
        """Redis's ``run_id``: it changes when Redis restarts (and may have lost its last second).
        On a Cluster, that of the master holding set ``sid`` (a failover changes it), or one id
        made of every master's (``connection.node_run_id``)."""
        return connection.node_run_id(self.r, keys.job_set(sid) if sid and self.cluster else None)

    def restarted_at(self) -> float | None:
        """When a restart of Redis was first noticed (by comparing ``run_id`` with the one seen
        before, which survives the restart in the append-only file); None if never."""
        now_id = self.run_id()
        seen = self.r.getset(keys.REDIS_RUN_ID, now_id)
        if seen is not None and seen.decode() != now_id:
            self.r.set(keys.REDIS_RESTARTED, repr(time.time()))
        raw = self.r.get(keys.REDIS_RESTARTED)
        return float(raw) if raw else None

    # ----------------------------------------------------------------- creation
    def create_job_set(self, rec: JobSetRecord, job_qpy: list[bytes], names: list[str], queue: str,
                       job_pubs: list[bytes] | None = None, layout: bytes | None = None) -> None:
        """Write a whole job set in one transaction: it exists completely or not at all.

        Each job waits for its transpile step in ``queue``, with tickets in job order. A set given
        as pubs also has each job's piece entries and the set's layout (``qjm.formats.pubs``)."""
        ttl, now, run_id = self.ttl, time.time(), self.run_id(rec.id)
        first = self.steps.tickets(queue, rec.n_jobs)
        p = self.r.pipeline(transaction=True)
        p.hset(keys.job_set(rec.id), mapping=rec.to_hash())
        p.expire(keys.job_set(rec.id), ttl)
        p.set(keys.names(rec.id), codec.dumps(names), ex=ttl)
        for i, ((start, stop), blob) in enumerate(zip(rec.job_bounds, job_qpy, strict=True)):
            job = JobRecord(index=i, start=start, stop=stop, status=JobStatus.QUEUED, updated=now, run_id=run_id,
                            step=Step.TRANSPILE, queue=queue, ticket=first + i, step_at=now)
            p.hset(keys.job(rec.id, i), mapping=job.to_hash())
            p.expire(keys.job(rec.id, i), ttl)
            p.set(keys.circuits(rec.id, i), blob, ex=ttl)
            if job_pubs is not None:
                p.set(keys.pubs(rec.id, i), job_pubs[i], ex=ttl)
        if layout is not None:
            p.set(keys.layout(rec.id), layout, ex=ttl)
        p.execute()
        # The indexes live outside the set's hash slot (Redis Cluster): added once the set exists.
        p = self.r.pipeline(transaction=False)
        p.zadd(keys.INDEX, {rec.id: rec.created})
        p.zadd(keys.RUNNING, {rec.id: rec.created})
        self.index.add(rec, expires=now + ttl, pipe=p)
        # The run_id this set was written under, unless one is known already: a Redis restart
        # before any reconciler tick (a fast set) is then still noticed (``restarted_at``).
        p.set(keys.REDIS_RUN_ID, self.run_id() if self.cluster else run_id, nx=True)
        p.execute()

    def running_ids(self) -> list[str]:
        """Ids of the sets not yet final, oldest first."""
        return [raw.decode() for raw in self.r.zrange(keys.RUNNING, 0, -1)]

    def forget_running(self, sid: str) -> None:
        self.r.zrem(keys.RUNNING, sid)

    def note_scan_from(self, sid: str, i: int) -> None:
        self.existing.set(keys.job_set(sid), {"scan_from": i})

    def note_assemble_sent(self, sid: str, when: float) -> None:
        self.existing.set(keys.job_set(sid), {"assemble_sent_at": repr(when)})

    # ----------------------------------------------------------------- reading
    def job_set(self, sid: str) -> JobSetRecord:
        sid = keys.job_set_id(sid)  # in any case; anything else is refused, saying what an id looks like
        h = self.r.hgetall(keys.job_set(sid))
        if not h:
            if self.r.exists(keys.legacy_job_set(sid)):
                raise JobSetNotFoundError(
                    f"Job set {sid} was written by qjm 0.1, whose Redis keys this version does not read. "
                    f"Fetch its results with qjm 0.1, or delete it: redis-cli --scan --pattern "
                    f"'{keys.legacy_job_set(sid)}*' | xargs redis-cli del")
            if self.r.exists(keys.tombstone(sid)):
                raise JobSetNotFoundError(f"Job set {sid} was deleted.")
            raise JobSetNotFoundError(
                f"No job set with id {sid!r} in {self.shown_url} (wrong id, other Redis, or expired).")
        return JobSetRecord.from_hash(h)

    def jobs(self, sid: str, n: int | None = None, fields: tuple[str, ...] | None = None,
             indices: list[int] | range | None = None) -> list[JobRecord]:
        """Every job of the set (or those at ``indices``); with ``fields``, records with only
        those read (e.g. ``OUTCOME_FIELDS``), which costs a large set's reader a fraction of the bytes."""
        if indices is None:
            indices = range(self.job_set(sid).n_jobs if n is None else n)
        p = self.r.pipeline(transaction=False)
        for i in indices:
            if fields:
                p.hmget(keys.job(sid, i), fields)
            else:
                p.hgetall(keys.job(sid, i))
        found = p.execute()
        if fields:
            found = [{f.encode(): v for f, v in zip(fields, values, strict=True) if v is not None} for values in found]
        if not all(found):
            raise JobSetNotFoundError(f"Job set {sid!r} has expired.")
        return [JobRecord.from_hash(h) for h in found]

    def job(self, sid: str, i: int) -> JobRecord:
        h = self.r.hgetall(keys.job(sid, i))
        if not h:
            raise JobSetNotFoundError(f"Job set {sid!r} has no job {i}.")
        return JobRecord.from_hash(h)

    def job_statuses(self, sid: str, n: int) -> list[JobStatus]:
        """Just each job's status: what metrics and progress need."""
        p = self.r.pipeline(transaction=False)
        for i in range(n):
            p.hget(keys.job(sid, i), "status")
        raw = p.execute()
        if not all(raw):
            raise JobSetNotFoundError(f"Job set {sid!r} has expired.")
        return [JobStatus(s.decode()) for s in raw]

    def names(self, sid: str) -> list[str]:
        return codec.loads(self.r.get(keys.names(sid))) or []

    def isa_qpy(self, sid: str, i: int) -> bytes | None:
        return self.r.get(keys.isa(sid, i))

    def job_result(self, sid: str, i: int) -> list[dict[str, Any]] | None:
        """A counts set's job result: its experiment records."""
        return codec.loads(self.outputs.read(sid, i))

    def job_pubs(self, sid: str, i: int) -> list[dict[str, Any]] | None:
        return codec.loads(self.r.get(keys.pubs(sid, i)))

    def layout(self, sid: str) -> list[list[Any]] | None:
        return codec.loads(self.r.get(keys.layout(sid)))

    def prepared(self, sid: str, i: int) -> str | None:
        raw = self.r.get(keys.prepared(sid, i))
        return None if raw is None else raw.decode()

    def set_prepared(self, sid: str, i: int, text: str) -> None:
        self.r.set(keys.prepared(sid, i), text, ex=self.ttl)

    def job_set_ids(self) -> Iterator[str]:
        """Ids newest first; ids whose job set has expired are pruned on the way."""
        for raw in self.r.zrevrange(keys.INDEX, 0, -1):
            sid = raw.decode()
            if self.r.exists(keys.job_set(sid)):
                yield sid
            else:
                self.r.zrem(keys.INDEX, sid)

    def set_summaries(self) -> list[tuple[str, JobSetStatus, str, int]]:
        """``(id, status, backend, number of jobs)`` of every kept set, for the metrics."""
        ids = [raw.decode() for raw in self.r.zrange(keys.INDEX, 0, -1)]
        p = self.r.pipeline(transaction=False)
        for sid in ids:
            p.hmget(keys.job_set(sid), "status", "backend", "n_jobs", "job_bounds")
        return [(sid, JobSetStatus(status.decode()), backend.decode(), int(n) if n else len(codec.loads(bounds)))
                for sid, (status, backend, n, bounds) in zip(ids, p.execute(), strict=True) if status]

    # ----------------------------------------------------------------- job transitions
    def advance(self, sid: str, i: int, status: JobStatus, *, result: bytes | None = None,
                isa: bytes | None = None, **fields: Any) -> tuple[JobStatus, bool]:
        """Move job ``i`` forward to ``status``, with fields and the blob that comes with it (its
        result, or its transpiled circuits) in the same step.

        Returns the status the job has afterwards and whether this call moved it: a job already
        final, further along or in that status stays as it is (and its fields unchanged).
        """
        move = self.move(sid, i, status, result=result, isa=isa, **fields)
        return move.status, move.moved

    def move(self, sid: str, i: int, status: JobStatus, *, result: bytes | None = None,
             isa: bytes | None = None, **fields: Any) -> Move:
        """``advance``, also telling whether this move made the set's last job final (exactly one
        move of a set is told so: its maker sends the set's assembly)."""
        blob: bytes | str = ""
        blob_key = keys.result(sid, i)
        if result is not None:  # already in the set's format (``qjm.formats.outputs.encode``)
            blob = self.outputs.write_parts(sid, i, result)
        elif isa is not None:
            blob, blob_key = isa, keys.isa(sid, i)
        argv: list[Any] = [status.value, status.rank, FINAL_RANK, self.ttl, blob, repr(time.time())]
        for k, v in fields.items():
            argv += [k, "" if v is None else str(v)]
        out = self._advance(keys=[keys.job(sid, i), blob_key, keys.job_set(sid)], args=argv)
        if out is None:
            raise JobSetNotFoundError(f"Job set {sid!r} has no job {i} (expired?).")
        after, moved, last = out
        return Move(JobStatus(after.decode() if isinstance(after, bytes) else after), bool(moved), bool(last))

    def set_job_fields(self, sid: str, i: int, **fields: Any) -> None:
        """Record facts about a job (e.g. its remote id) without changing its status."""
        self.existing.set(keys.job(sid, i), fields)

    def record_post_attempt(self, sid: str, i: int, run_id: str) -> None:
        """Record that a delivery begins posting job ``i`` (under ``run_id``, ``run_id(sid)``):
        it guards an outside effect, so on a Cluster it waits for a replica before the post."""
        args = ["set", "post_attempted", repr(time.time()), "run_id", run_id]
        connection.write_durably(self.r, self.existing.script, keys.job(sid, i), args, self.cfg.replica_wait_ms)

    def waiting_since(self, sid: str, i: int) -> float:
        """When the job first waited for a remote slot (recorded on the first call)."""
        key = keys.job(sid, i)
        self.existing.set_new(key, "waiting_since", repr(time.time()))
        return float(self.r.hget(key, "waiting_since") or time.time())

    #: Seconds a posting lock outlives its holder's last renewal (see ``posting_lock``).
    POSTING_LOCK_SECONDS = 15

    def posting_lock(self, sid: str, i: int) -> redis.lock.Lock:
        """Held while one delivery looks for and posts a job; never waited for.

        Its holder renews it while the post lasts (the client's own retries can take a minute),
        so it expires soon after a holder that died; the job's tag then tells the next delivery
        whether the job was posted."""
        return self.r.lock(keys.posting_lock(sid, i), timeout=self.POSTING_LOCK_SECONDS, blocking=False)

    # ----------------------------------------------------------------- job-set transitions
    def batch_lock(self, sid: str) -> redis.lock.Lock:
        """Held while a set's batch is opened, so concurrent first submits open only one; waited
        for a moment at most (``RemoteRunner._batch``), and renewed by its holder (so it frees soon after a holder that died)."""
        return self.r.lock(keys.batch_lock(sid), timeout=self.POSTING_LOCK_SECONDS, blocking=False)

    def set_batch(self, sid: str, batch_id: str, field: str = BATCH_FIELD) -> bool:
        """Record the set's remote batch (on one backend: ``records.batch_field``) once; returns
        False if another worker won the race."""
        return self.existing.set_new(keys.job_set(sid), field, batch_id)

    def drop_batch(self, sid: str, batch_id: str, field: str = BATCH_FIELD) -> bool:
        """Forget the set's batch if it is still ``batch_id`` (the service closed it)."""
        return bool(self._drop_batch(keys=[keys.job_set(sid)], args=[batch_id, field]))

    def new_attempt(self, sid: str, i: int, ended: int, why: str, kind: str = "repost",
                    start: JobStatus = JobStatus.TRANSPILED) -> int:
        """Start job ``i``'s next attempt after attempt ``ended`` (see ``scripts/new_attempt.lua``),
        from ``start``; ``kind`` says what started it (``qjm.engine.retries``).
        Returns the new attempt, or 0 if the job had moved to another attempt already."""
        return int(self._new_attempt(keys=[keys.job(sid, i), keys.job_set(sid)],
                                     args=[ended, start.value, start.rank, repr(time.time()), why, kind, FINAL_RANK]))

    def relabel(self, sid: str, name: str | None = None, tags: list[str] | None = None) -> JobSetRecord:
        """Rename and/or retag a set (``scripts/relabel.lua``), then re-list it (``index``)."""
        args: list[str] = []
        if name is not None:
            args += ["name", name]
        if tags is not None:
            args += ["tags", codec.dumps(tags).decode()]
        if not self._relabel(keys=[keys.job_set(sid)], args=args):
            self.job_set(sid)  # raises, saying why
        rec = self.job_set(sid)
        self.index.update(rec)
        return rec

    def claim_jobs_sent(self, sid: str) -> bool:
        """True for the one caller that gets to send the set's job messages."""
        return self.existing.set_new(keys.job_set(sid), "jobs_sent", "1")

    def claim_batch_close(self, sid: str) -> bool:
        """True for the one caller that gets to close (or cancel) the set's batch."""
        return self.existing.set_new(keys.job_set(sid), "batch_closed", "1")

    def request_cancel(self, sid: str) -> list[JobRecord]:
        """Flag the set cancelled and move every unfinished job to CANCELLED; returns the jobs
        this call cancelled (their remote jobs need cancelling)."""
        rec = self.job_set(sid)
        self.existing.set(keys.job_set(sid), {"cancel_requested": "1"})
        cancelled = []
        for job in self.jobs(sid, rec.n_jobs):
            if not job.status.final and self.advance(sid, job.index, JobStatus.CANCELLED,
                                                     error=CANCELLED_BY_USER)[1]:
                cancelled.append(job)
        return cancelled

    def finish(self, sid: str, status: JobSetStatus) -> bool:
        """Record the set's final state, unless it is final already (then nothing changes: the
        first assembly wins). Returns whether this call finished the set."""
        args = [status.value, repr(time.time()), keys.final_channel(sid)]
        won = bool(self._finish(keys=[keys.job_set(sid)], args=args))
        self.forget_running(sid)
        return won

    @contextmanager
    def final_notice(self, sid: str) -> Iterator[Callable[[float], None]]:
        """Listen for the set's final status; yields ``pause(seconds)``, which returns early when
        it is announced. Subscribe first, then read the status, so the notice cannot slip by."""
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.final_channel(sid))

        def pause(seconds: float) -> None:
            try:
                pubsub.get_message(timeout=max(0.0, seconds))
            except (redis.ConnectionError, redis.TimeoutError):
                # The node went (a Cluster failover): the caller reads the status next, so a
                # notice missed meanwhile costs one pause, never the set.
                time.sleep(max(0.0, seconds))
                try:
                    pubsub.subscribe(keys.final_channel(sid))
                except redis.RedisError:
                    pass

        try:
            yield pause
        finally:
            pubsub.close()

