"""What the store keeps about a job set and each of its jobs, as plain dataclasses.

Records are read from and written to Redis hashes; they are snapshots, never live handles
(``qjm.job_set`` builds the user's live views on top of them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..lifecycle import JobSetStatus, JobStatus, Step


def new_job_set_id() -> str:
    return uuid.uuid4().hex


def _getter(h: dict[bytes, bytes]) -> Callable[[str], str]:
    return lambda k: h.get(k.encode(), b"").decode()


def _float(raw: str) -> float | None:
    return float(raw) if raw else None


#: What a reader of a set's outcome needs of each job (``Store.jobs(fields=...)``): a job's whole
#: hash is several times larger (its liveness and timing fields).
OUTCOME_FIELDS = ("index", "start", "stop", "status", "attempt", "remote_id", "error")
#: What the reconciler needs of each job of a running set, every tick.
LIVENESS_FIELDS = ("index", "status", "attempt", "remote_id", "updated", "step", "queue", "ticket", "due", "step_at",
                   "started_at", "started_by", "startable_at", "resends")


@dataclass
class JobRecord:
    """One job of a set: experiments ``start`` to ``stop - 1`` of the set."""

    index: int
    start: int
    stop: int
    status: JobStatus
    #: 1 for the first run of the job; each re-run is a new attempt, posted anew.
    attempt: int = 1
    remote_id: str | None = None
    error: str | None = None
    updated: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    #: When a delivery began posting this attempt (then the service is asked before posting again).
    post_attempted: float | None = None
    #: The job's age when a poll last found it still pending (a lower bound of its duration).
    seen_pending_age: float | None = None
    #: Redis's ``run_id`` when the job was created or its post began: a different one now means
    #: Redis restarted since, and may have lost that the post began.
    run_id: str | None = None
    # Liveness (``qjm.reconciler``): the step the job waits for, in which queue, and by when.
    step: Step | None = None
    queue: str | None = None
    #: The step's place in its queue (``Steps.plan``), 0 for a step due at a time (``due``).
    ticket: int = 0
    due: float | None = None
    step_at: float | None = None
    started_at: float | None = None
    started_by: str | None = None
    #: When the reconciler first saw that the step could have started (the grace runs from here).
    startable_at: float | None = None
    resends: int = 0
    #: Only the poll loop carrying this epoch may poll the job (a re-send starts a new one).
    poll_epoch: int = 0
    #: Earlier attempts: ``{"attempt", "remote_id", "error", "ended", "kind", "times"}`` each
    #: (``kind``: repost, retry or rerun; ``times``: as ``times`` below).
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Status -> when this attempt reached it (``advance.lua``); QUEUED or TRANSPILED when the
    #: attempt began, for attempts after the first.
    times: dict[str, float] = field(default_factory=dict)

    @property
    def step_started(self) -> bool:
        """Whether a task has begun the step the job now waits for."""
        return bool(self.started_at and self.step_at and self.started_at >= self.step_at)

    @classmethod
    def from_hash(cls, h: dict[bytes, bytes]) -> JobRecord:
        g = _getter(h)
        return cls(
            index=int(g("index") or 0),
            start=int(g("start") or 0),
            stop=int(g("stop") or 0),
            status=JobStatus(g("status")),
            attempt=int(g("attempt") or 1),
            remote_id=g("remote_id") or None,
            error=g("error") or None,
            updated=_float(g("updated")),
            submitted_at=_float(g("submitted_at")),
            finished_at=_float(g("finished_at")),
            post_attempted=_float(g("post_attempted")),
            seen_pending_age=_float(g("seen_pending_age")),
            run_id=g("run_id") or None,
            step=Step(g("step")) if g("step") else None,
            queue=g("queue") or None,
            ticket=int(g("ticket") or 0),
            due=_float(g("due")),
            step_at=_float(g("step_at")),
            started_at=_float(g("started_at")),
            started_by=g("started_by") or None,
            startable_at=_float(g("startable_at")),
            resends=int(g("resends") or 0),
            poll_epoch=int(g("poll_epoch") or 0),
            history=codec.loads(g("history") or "[]"),
            times={k.decode()[3:]: float(v) for k, v in h.items() if k.startswith(b"at_") and v},
        )

    def to_hash(self) -> dict[str, str]:
        """The fields a new job is created with."""
        return {"index": str(self.index), "start": str(self.start), "stop": str(self.stop),
                "status": self.status.value, "rank": str(self.status.rank), "attempt": str(self.attempt),
                "updated": repr(self.updated or 0.0), "run_id": self.run_id or "",
                "step": self.step.value if self.step else "", "queue": self.queue or "", "ticket": str(self.ticket),
                "step_at": repr(self.step_at or 0.0)}


def _regular_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _bounds_fields(bounds: list[tuple[int, int]], n: int) -> dict[str, str]:
    """Jobs of one size are kept as that size: the set's hash is read by every step, and a list
    of 1,000 ranges would make each read 12 KB."""
    size = bounds[0][1] - bounds[0][0] if bounds else 0
    if size > 0 and [tuple(b) for b in bounds] == _regular_bounds(n, size):
        return {"job_size": str(size)}
    return {"job_bounds": codec.dumps(bounds).decode()}


def _bounds_from(g: Callable[[str], str]) -> list[tuple[int, int]]:
    if g("job_size"):
        return _regular_bounds(int(g("n_experiments")), int(g("job_size")))
    return [(int(a), int(b)) for a, b in codec.loads(g("job_bounds"))]


@dataclass
class JobSetRecord:
    """The job set as stored: what was asked for and where it stands."""

    id: str
    name: str | None
    backend: str
    tags: list[str]
    created: float
    n_experiments: int
    job_bounds: list[tuple[int, int]]
    options: dict[str, Any]
    status: JobSetStatus = JobSetStatus.RUNNING
    batch_id: str | None = None
    cancel_requested: bool = False
    finished: float | None = None
    #: When the reconciler last sent this set's assembly (it re-sends it after a grace period).
    assemble_sent_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: A job whose failure is transient (``qjm.retries``) runs again up to this many times.
    max_retries: int = 0
    #: How many times ``rerun_failed()`` reopened the set.
    reruns: int = 0
    #: Jobs not yet final (``advance.lua``); None for a set written before qjm counted them.
    jobs_left: int | None = None
    #: Where the reconciler's next look at a set larger than its share of a tick begins.
    scan_from: int = 0

    @property
    def n_jobs(self) -> int:
        return len(self.job_bounds)

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name or "",
            "backend": self.backend,
            "tags": codec.dumps(self.tags).decode(),
            "created": repr(self.created),
            "n_experiments": str(self.n_experiments),
            "n_jobs": str(self.n_jobs),
            "jobs_left": str(self.n_jobs),  # counted down as jobs become final (``advance.lua``)
            **_bounds_fields(self.job_bounds, self.n_experiments),
            "options": codec.dumps(self.options).decode(),
            "status": self.status.value,
            "extra": codec.dumps(self.extra).decode(),
            "max_retries": str(self.max_retries),
        }

    @classmethod
    def from_hash(cls, h: dict[bytes, bytes]) -> JobSetRecord:
        g = _getter(h)
        return cls(
            id=g("id"),
            name=g("name") or None,
            backend=g("backend"),
            tags=codec.loads(g("tags") or "[]"),
            created=float(g("created")),
            n_experiments=int(g("n_experiments")),
            job_bounds=_bounds_from(g),
            options=codec.loads(g("options")),
            status=JobSetStatus(g("status")),
            batch_id=g("batch_id") or None,
            cancel_requested=g("cancel_requested") == "1",
            finished=_float(g("finished")),
            assemble_sent_at=_float(g("assemble_sent_at")),
            extra=codec.loads(g("extra") or "{}"),
            max_retries=int(g("max_retries") or 0),
            reruns=int(g("reruns") or 0),
            jobs_left=int(g("jobs_left")) if g("jobs_left") else None,
            scan_from=int(g("scan_from") or 0),
        )


@dataclass(frozen=True)
class Snapshot:
    """A job set's state at one moment: its record and, when asked for, each job's status."""

    record: JobSetRecord
    statuses: list[JobStatus] | None = None

    @property
    def final(self) -> bool:
        return self.record.status.final
