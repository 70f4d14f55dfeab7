"""The reconciler: liveness from Redis, not from messages.

Celery messages are the fast path. Every unfinished job records in Redis which step it waits for
and since when (``store.steps``); every worker runs this reconciler on a timer, and one of them
per tick (a Redis lock) re-sends the steps that could have started but did not within
``QJM_RECONCILE_GRACE``, and the assembly of a set whose jobs are all final while it is not.

A step *could have started* when it was due (a retry's countdown ran out), when its queue moved
past its ticket or is empty (so a long backlog is never mistaken for a loss), or, for a step that
started, when the worker running it stopped saying it is alive, or Redis restarted since (and may
have lost what that task wrote). A re-sent step gets a new ticket, so it has at most one re-send
outstanding; a re-sent poll starts a new poll loop (an epoch) that retires the old one. A step
lost ``MAX_RESENDS`` times fails its job, so a set always ends.

The work per tick is proportional to the sets still running, not to all sets kept, and bounded:
a tick reads at most ``SCAN_BUDGET`` jobs, shared among the running sets (each gets at least
``MIN_SHARE``). A set larger than its share is read in turns, a window a tick, so a deep backlog of
small jobs costs Redis a bounded read every tick; a lost step in such a set is found within a
pass over it instead of a tick.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import JobSetNotFoundError
from ..lifecycle import Step
from ..store import LIVENESS_FIELDS, JobRecord, JobSetRecord
from ..store import keys as store_keys
from . import dispatch, retries
from .pipeline import Pipeline

log = logging.getLogger(__name__)

#: A step lost this many times fails its job instead of being sent again.
MAX_RESENDS = 3
#: Jobs a tick reads at most, among all running sets, and the least any one set gets.
SCAN_BUDGET = 20_000
MIN_SHARE = 1_000

Resend = Callable[[str, int, Step, bool, int], None]


@dataclass
class TickReport:
    """What one tick did: re-sent steps by kind, sets sent to assembly, jobs failed."""

    sets: int = 0
    resent: Counter[Step] = field(default_factory=Counter)
    assembled: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    #: Listing-index entries put right (``store.index.SetIndex.repair``).
    index_fixes: int = 0
    #: Jobs read.
    jobs_read: int = 0
    #: QPU-time reservations settled for attempts that ended without settling them (``qjm.usage.posting``).
    usage_fixes: int = 0


class Reconciler:
    def __init__(self, pipeline: Pipeline, node: str, resend: Resend | None = None,
                 assemble: Callable[[str], None] | None = None,
                 queue_length: Callable[[str], int] | None = None, scan_budget: int = SCAN_BUDGET) -> None:
        """``resend``, ``assemble`` and ``queue_length`` talk to the broker (``qjm.engine.dispatch``);
        in-process tests pass their own."""
        self.pipeline, self.node = pipeline, node
        self.store, self.cfg = pipeline.store, pipeline.cfg
        cfg = self.cfg
        self.resend = resend or (lambda sid, i, step, local, epoch:
                                 dispatch.resend_step(cfg, sid, i, step, local, epoch))
        self.assemble = assemble or (lambda sid: dispatch.send_assemble(cfg, sid))
        self.queue_length = queue_length or (lambda queue: dispatch.queue_length(cfg, queue))
        self.scan_budget = scan_budget

    @property
    def grace(self) -> float:
        return self.cfg.reconcile_grace

    def heartbeat(self) -> None:
        """Say this worker is alive, so the steps it runs are not taken for lost."""
        self.store.steps.heartbeat(self.node, ttl=3 * self.cfg.reconcile_interval + 1)

    def tick(self) -> TickReport | None:
        """Heartbeat, then reconcile if no other worker does this tick. None when another did."""
        self.heartbeat()
        lock_ms = int(self.cfg.reconcile_interval * 900)
        if not self.store.r.set(store_keys.RECONCILER_LOCK, self.node, nx=True, px=lock_ms):
            return None
        return self.reconcile()

    def reconcile(self, now: float | None = None) -> TickReport:
        now = time.time() if now is None else now
        report = TickReport()
        marks = self.store.steps.watermarks()
        lengths: dict[str, int] = {}
        restarted = self.store.restarted_at()
        running = self.store.running_ids()
        report.index_fixes = self.store.index.repair(running)
        try:
            report.usage_fixes = self.pipeline.remote.qpu.repair(self.pipeline.executor_for, now)
        except Exception:  # noqa: BLE001 - the next tick tries again; the rest of the tick goes on
            log.exception("settling QPU-time reservations failed")
        share = max(min(MIN_SHARE, self.scan_budget), self.scan_budget // max(1, len(running)))
        for sid in running:
            try:
                rec = self.store.job_set(sid)
            except JobSetNotFoundError:  # expired or deleted
                self.store.forget_running(sid)
                continue
            if rec.status.final:
                self.store.forget_running(sid)
                continue
            report.sets += 1
            window = self._window(rec, share)
            try:
                jobs = self.store.jobs(sid, fields=LIVENESS_FIELDS, indices=window)  # a tick reads what it needs
            except JobSetNotFoundError:  # deleted or expired since its record was read
                continue
            report.jobs_read += len(jobs)
            if len(window) == rec.n_jobs and all(job.status.final for job in jobs):
                self._assembly(rec, jobs, now, report)
                continue
            started_by = sorted({j.started_by for j in jobs if j.step_started and j.started_by})
            alive = self.store.steps.alive(started_by)
            for job in jobs:
                if job.status.final or job.step is None:
                    continue
                if not self._could_have_started(job, now, marks, lengths, alive, restarted):
                    continue
                since = job.startable_at or self.store.steps.mark_startable(sid, job.index, now)
                if now - since >= self.grace:
                    self._resend(rec, job, report)
        return report

    def _window(self, rec: JobSetRecord, share: int) -> range | list[int]:
        """The jobs of the set this tick reads: all of them, unless the set has more unfinished
        jobs than ``share`` (then ``share`` of them from where the last look stopped, and the
        next look goes on from there). A set whose jobs are all final is read whole (its
        assembly may be lost), as is one written before qjm counted its unfinished jobs."""
        n = rec.n_jobs
        if n <= share or not rec.jobs_left:
            return range(n)
        start = rec.scan_from % n
        stop = start + share
        self.store.note_scan_from(rec.id, stop % n)
        return [*range(start, min(stop, n)), *range(0, max(0, stop - n))]

    def _could_have_started(self, job: JobRecord, now: float, marks: dict[str, int], lengths: dict[str, int],
                            alive: dict[str, bool], restarted: float | None) -> bool:
        if job.step_started:
            if restarted is not None and job.started_at is not None and job.started_at < restarted:
                return True  # Redis may have lost what the task wrote before the restart
            return not alive.get(job.started_by or "", False)
        if job.due:
            return now >= job.due
        queue = job.queue or ""
        if job.ticket and job.ticket <= marks.get(queue, 0):
            return True
        if queue not in lengths:
            lengths[queue] = self.queue_length(queue)
        return lengths[queue] == 0

    def _resend(self, rec: JobSetRecord, job: JobRecord, report: TickReport) -> None:
        assert job.step is not None
        step = job.step
        if job.resends >= MAX_RESENDS:
            why = retries.lost_step(step.value, job.resends + 1)
            log.error("job set %s job %d: %s; failing the job unless it may retry", rec.id, job.index, why)
            if not self.pipeline.runner(rec).abandon(rec, self.store.job(rec.id, job.index), why):
                report.failed.append((rec.id, job.index))
            return
        local = self.pipeline.is_local(rec)
        if not self.store.steps.plan(rec.id, job.index, step, job.queue or "", after=step):
            return  # the job moved on meanwhile: nothing was lost
        epoch = self.store.steps.resent(rec.id, job.index, step, bump_epoch=not local)
        self.resend(rec.id, job.index, step, local, epoch)
        report.resent[step] += 1
        log.warning("job set %s job %d: its %s step did not run within %.0f s of when it could have; "
                    "re-sent it (re-send %d)", rec.id, job.index, step.value, self.grace, job.resends + 1)

    def _assembly(self, rec: JobSetRecord, jobs: list[JobRecord], now: float, report: TickReport) -> None:
        """Every job is final but the set is not: its assembly message may have been lost."""
        last = max((job.updated or 0.0) for job in jobs)
        since = rec.assemble_sent_at or last
        if now - since < self.grace:
            return
        self.store.note_assemble_sent(rec.id, now)
        self.assemble(rec.id)
        report.assembled.append(rec.id)
        log.warning("job set %s: every job is final but the set was not assembled within %.0f s; "
                    "sent its assembly", rec.id, self.grace)
