"""Which step each unfinished job waits for, and since when: the state the reconciler reads.

Celery messages are the fast path; this is what makes a lost one cost a grace period instead of
a set. Every step sent to a queue gets a *ticket*, its place in that queue's order; every task
that starts records the highest ticket of its queue that has started. A step whose ticket is at
or below that mark (or whose queue is empty) could have started; a step due at a time (a retry
with a countdown) could have started at that time. A backlog is therefore never mistaken for a
loss: a step behind a long queue is not startable until the queue has moved past it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from ..lifecycle import FINAL_RANK, JobStatus, Step
from . import keys, scripts
from .existing import ExistingHashes
from .records import JobRecord

#: Seconds a process may hold back a queue's watermark (``Steps.note_started``): one write a
#: second per process, not one per task. A watermark late by that much only makes a lost step
#: look like backlog that much longer.
MARK_EVERY = 1.0


@dataclass(frozen=True)
class Begun:
    """What ``Steps.begin`` found: the job before the move, whether it moved, whether its set is
    cancelled, and its circuits (QPY; None if there are none)."""

    job: JobRecord
    moved: bool
    cancel_requested: bool
    circuits: bytes | None = None


class Steps:
    def __init__(self, r: redis.Redis, existing: ExistingHashes) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self.existing = existing
        self._plan = scripts.load(r, "plan_step")
        self._started = scripts.load(r, "step_started")
        self._begin = scripts.load(r, "begin_step")
        self._marks: dict[str, int] = {}  # queue -> highest started ticket not yet written
        self._marked_at = 0.0

    def tickets(self, queue: str, n: int) -> int:
        """Reserve ``n`` consecutive tickets of ``queue``; returns the first."""
        return int(self.r.incrby(keys.queue_seq(queue), n)) - n + 1

    def plan(self, sid: str, i: int, step: Step, queue: str, delay: float | None = None,
             after: Step | None = None) -> bool:
        """Record that job ``i`` now waits for ``step`` in ``queue``: sent now (it gets a ticket) or
        due in ``delay`` seconds (a countdown). Call before sending the step's message. With
        ``after``, only if the job still waits for that step (the caller just performed it).
        Returns whether the plan was recorded."""
        now = time.time()
        ticket = self.tickets(queue, 1) if delay is None else 0
        due = repr(now + delay) if delay is not None else ""
        args = [after.value if after else "", step.value, queue, ticket, repr(now), due]
        return bool(self._plan(keys=[keys.job(sid, i)], args=args))

    def started(self, sid: str, i: int, step: Step, node: str, epoch: int | None = None) -> bool:
        """A task began job ``i``'s ``step`` on worker ``node`` (a poll with its loop's ``epoch``).

        Returns False for a stale delivery: the job waits for another step, or another poll loop
        owns it. Otherwise the step's queue has moved past its ticket."""
        args = [step.value, "" if epoch is None else str(epoch), repr(time.time()), node]
        out = self._started(keys=[keys.job(sid, i)], args=args)
        if not out:
            return False
        self.note_started(_text(out[1]), int(out[0] or 0))
        return True

    def started_together(self, sid: str, indices: range, step: Step, node: str) -> None:
        """``started`` for jobs a task will run one after another (a run of small local jobs,
        ``dispatch.jobs_per_message``), in one round trip: while the task lives, the jobs at the
        back of its run are not taken for lost; if its worker dies, they are re-sent as its own."""
        if not indices:
            return
        p = self.r.pipeline(transaction=False)
        now = repr(time.time())
        for i in indices:
            self._started(keys=[keys.job(sid, i)], args=[step.value, "", now, node], client=p)
        try:
            answers = p.execute()
        except redis.exceptions.NoScriptError:
            # A Cluster's pipeline does not load scripts, and a replica that took a slot over has
            # none: one call (which loads it) first, then the rest together (recording twice is harmless).
            self._started(keys=[keys.job(sid, indices[0])], args=[step.value, "", now, node])
            return self.started_together(sid, indices, step, node)
        for out in answers:
            if out:
                self.note_started(_text(out[1]), int(out[0] or 0))

    def begin(self, sid: str, i: int, step: Step, node: str, status: JobStatus) -> Begun | None:
        """``started``, moving the job to ``status`` too (unless it is that far already), and
        reading what the task needs first: the job and whether its set is cancelled. None for
        a stale delivery (the job waits for another step)."""
        args = [step.value, repr(time.time()), node, status.value, status.rank, FINAL_RANK]
        out = self._begin(keys=[keys.job(sid, i), keys.job_set(sid), keys.circuits(sid, i)], args=args)
        if not out:
            return None
        flat, moved, cancel, circuits = out
        job = JobRecord.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        self.note_started(job.queue or "", job.ticket)
        return Begun(job, bool(moved), cancel in (b"1", "1"), circuits or None)

    def note_started(self, queue: str, ticket: int) -> None:
        """The queue has moved past ``ticket``: raise its watermark, at once if this process has
        not written one for ``MARK_EVERY`` seconds, else with its next write (``flush_marks``)."""
        if ticket <= 0 or not queue:
            return
        if ticket > self._marks.get(queue, 0):
            self._marks[queue] = ticket
        if time.monotonic() - self._marked_at >= MARK_EVERY:
            self.flush_marks()

    def flush_marks(self) -> None:
        """Write the watermarks this process holds back."""
        marks, self._marks, self._marked_at = self._marks, {}, time.monotonic()
        if marks:
            self.r.zadd(keys.QUEUES_STARTED, marks, gt=True)

    def watermarks(self) -> dict[str, int]:
        """Queue -> the highest ticket whose task has started."""
        return {q.decode(): int(score) for q, score in self.r.zrange(keys.QUEUES_STARTED, 0, -1, withscores=True)}

    def mark_startable(self, sid: str, i: int, now: float) -> float:
        """When the reconciler first saw the job's step startable (recorded on the first call)."""
        key = keys.job(sid, i)
        raw = self.r.hget(key, "startable_at")  # '' once a step is planned or started
        if raw:
            return float(raw)
        self.existing.set(key, {"startable_at": repr(now)})  # one reconciler runs a tick (its lock)
        return now

    def resent(self, sid: str, i: int, step: Step, bump_epoch: bool) -> int:
        """Count a re-send of the job's step; a re-sent poll loop gets a new epoch. Returns the epoch."""
        # Two calls, not a pipeline: on a Cluster the script may need loading (see ``started_together``).
        counts = self.existing.incr(keys.job(sid, i), {"resends": 1, "poll_epoch": 1 if bump_epoch else 0})
        self.r.hincrby(keys.RESENT, step.value, 1)
        return int(counts[1]) if counts else 0

    def resent_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.r.hgetall(keys.RESENT).items()}

    def heartbeat(self, node: str, ttl: float) -> None:
        """Say worker ``node`` is alive for the next ``ttl`` seconds."""
        self.r.set(keys.worker_alive(node), repr(time.time()), px=int(ttl * 1000))

    def alive(self, nodes: list[str]) -> dict[str, bool]:
        if not nodes:
            return {}
        found = self.r.mget([keys.worker_alive(n) for n in nodes])
        return {n: v is not None for n, v in zip(nodes, found, strict=True)}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
