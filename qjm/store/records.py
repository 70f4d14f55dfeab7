"""What the store keeps about a job set and each of its jobs, as plain dataclasses.

Records are read from and written to Redis hashes; they are snapshots, never live handles
(``qjm.client.job_set`` builds the user's live views on top of them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..formats import codec
from ..lifecycle import JobSetStatus, JobStatus, Step


def new_job_set_id() -> str:
    return uuid.uuid4().hex


def _getter(h: dict[bytes, bytes]) -> Callable[[str], str]:
    return lambda k: h.get(k.encode(), b"").decode()


def _float(raw: str) -> float | None:
    return float(raw) if raw else None


#: What a reader of a set's outcome needs of each job (``Store.jobs(fields=...)``): a job's whole
#: hash is several times larger (its liveness and timing fields).
OUTCOME_FIELDS = ("index", "start", "stop", "status", "attempt", "remote_id", "error", "backend")
#: What a reader of a set's QPU time needs of each job (``qjm.usage.reading``); charges are
#: per attempt (``charged:<n>``), read with the whole hash.
USAGE_FIELDS = ("index", "status", "attempt", "backend", "estimate", "service_estimate", "reserved_attempt",
                "reserved", "held")
#: What the reconciler needs of each job of a running set, every tick.
LIVENESS_FIELDS = ("index", "status", "attempt", "remote_id", "backend", "updated", "step", "queue", "ticket", "due", "step_at",
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
    #: The backend the job was placed on (``qjm.backends.placement``); None until placed, and
    #: for a set of one backend, whose jobs all run on the set's.
    backend: str | None = None
    #: Jobs the device had ahead of this one when it was posted (``qjm.backends.queue``).
    ahead_at_post: int | None = None
    updated: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    #: When a delivery began posting this attempt (then the service is asked before posting again).
    post_attempted: float | None = None
    #: When qjm asked the service to cancel this job after the user cancelled it.
    cancel_sent: float | None = None
    #: The job's age when a poll last found it still pending (a lower bound of its duration).
    seen_pending_age: float | None = None
    #: Redis's ``run_id`` when the job was created or its post began: a different one now means
    #: Redis restarted since, and may have lost that the post began.
    run_id: str | None = None
    # Liveness (``qjm.engine.reconciler``): the step the job waits for, in which queue, and by when.
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
    #: qjm's estimate of the job's QPU seconds (``qjm.usage.estimate``), made when it was transpiled.
    estimate: float | None = None
    #: The service's own estimate of the posted attempt (``estimated_running_time_seconds``).
    service_estimate: float | None = None
    #: The attempt whose estimate is reserved now (``qjm.store.usage``), and how much.
    reserved_attempt: int | None = None
    reserved: float | None = None
    #: Attempt -> the QPU seconds the service charged for it, once it ended.
    charges: dict[int, float] = field(default_factory=dict)
    #: Why a HELD job waits (which budget or limit).
    held: str | None = None
    #: The instance month its reservation is in (``qjm.store.usage.month``).
    usage_period: str | None = None
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
            backend=g("backend") or None,
            ahead_at_post=int(g("ahead_at_post")) if g("ahead_at_post") else None,
            updated=_float(g("updated")),
            submitted_at=_float(g("submitted_at")),
            finished_at=_float(g("finished_at")),
            post_attempted=_float(g("post_attempted")),
            cancel_sent=_float(g("cancel_sent")),
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
            estimate=_float(g("estimate")),
            service_estimate=_float(g("service_estimate")),
            reserved_attempt=int(g("reserved_attempt")) if g("reserved_attempt") else None,
            reserved=_float(g("reserved")),
            charges={int(k.decode()[8:]): float(v) for k, v in h.items() if k.startswith(b"charged:") and v},
            held=g("held") or None,
            usage_period=g("usage_period") or None,
        )

    @property
    def charged(self) -> float | None:
        """QPU seconds charged over every attempt that ended (None while none has)."""
        return sum(self.charges.values()) if self.charges else None

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


#: How long a set's ``waiting_for`` note stands without being renewed.
WAITING_NOTE_SECONDS = 20.0
#: The set's hash field of the batch on its first backend; ``batch_id@<backend>`` for the others.
BATCH_FIELD = "batch_id"
#: ``used@<backend>`` in a fanned-out set's hash: a job of the set was placed there.
USED_FIELD = "used"


def batch_field(rec: JobSetRecord, backend: str) -> str:
    return BATCH_FIELD if backend == rec.backend else f"{BATCH_FIELD}@{backend}"


def _used(h: dict[bytes, bytes], backends: list[str]) -> list[str]:
    marked = {k.decode()[len(USED_FIELD) + 1:] for k in h if k.startswith(USED_FIELD.encode() + b"@")}
    return [b for b in backends if b in marked]


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
    #: The batch on ``backend``; a set over several backends has one on each (``batches``).
    batch_id: str | None = None
    cancel_requested: bool = False
    finished: float | None = None
    #: When the reconciler last sent this set's assembly (it re-sends it after a grace period).
    assemble_sent_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: A job whose failure is transient (``qjm.engine.retries``) runs again up to this many times.
    max_retries: int = 0
    #: How many times ``rerun_failed()`` reopened the set.
    reruns: int = 0
    #: Jobs not yet final (``advance.lua``); None for a set written before qjm counted them.
    jobs_left: int | None = None
    #: Where the reconciler's next look at a set larger than its share of a tick begins.
    scan_from: int = 0
    #: The backends a fanned-out set places its jobs on, ``backend`` first; empty for a set of
    #: one backend (``candidates`` reads either).
    backends: list[str] = field(default_factory=list)
    #: Backend -> its batch, for the backends after the first of a fanned-out set.
    batches: dict[str, str] = field(default_factory=dict)
    #: The backends of a fanned-out set that a job was placed on so far (``Placing.mark_used``),
    #: in the order of ``backends``: the set is listed under these (``index.Entry``).
    used: list[str] = field(default_factory=list)
    #: What the set last waited for (``qjm.backends.placement``), and when that was seen.
    waiting_for: str | None = None
    waiting_noted: float | None = None
    #: QPU seconds: the set's budget (None: none), what its posted attempts reserved and what
    #: the service charged for those that ended, in all and per backend (``qjm.store.usage``).
    qpu_budget: float | None = None
    qpu_reserved: float = 0.0
    qpu_consumed: float = 0.0
    qpu_by_backend: dict[str, float] = field(default_factory=dict)

    @property
    def n_jobs(self) -> int:
        return len(self.job_bounds)

    def waiting(self, now: float) -> str | None:
        """What the set waits for, if a look at its backends said so in the last 20 seconds (each
        look renews it; once posting goes on, nobody does)."""
        if self.status.final or not self.waiting_for or now - (self.waiting_noted or 0.0) > WAITING_NOTE_SECONDS:
            return None
        return self.waiting_for

    @property
    def candidates(self) -> list[str]:
        """Every backend the set may run on: the one it names, or those it fans out over."""
        return self.backends or [self.backend]

    @property
    def fans_out(self) -> bool:
        return len(self.candidates) > 1

    def job_backend(self, job: JobRecord) -> str:
        """Where the job runs: the backend it was placed on, else the set's."""
        return job.backend or self.backend

    def batch_for(self, backend: str) -> str | None:
        return self.batch_id if backend == self.backend else self.batches.get(backend)

    @property
    def all_batches(self) -> dict[str, str]:
        """Backend -> batch, for every batch the set has open."""
        out = dict(self.batches)
        if self.batch_id:
            out[self.backend] = self.batch_id
        return out

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
            **({"backends": codec.dumps(self.backends).decode()} if self.fans_out else {}),
            **({"qpu_budget": repr(float(self.qpu_budget))} if self.qpu_budget is not None else {}),
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
            backends=codec.loads(g("backends") or "[]"),
            waiting_for=g("waiting_for") or None,
            waiting_noted=_float(g("waiting_noted")),
            qpu_budget=_float(g("qpu_budget")),
            qpu_reserved=max(0.0, float(g("qpu_reserved") or 0.0)),
            qpu_consumed=float(g("qpu_consumed") or 0.0),
            qpu_by_backend={k.decode()[13:]: float(v) for k, v in h.items() if k.startswith(b"qpu_consumed@") and v},
            batches={k.decode()[len(BATCH_FIELD) + 1:]: v.decode() for k, v in h.items()
                     if k.startswith(BATCH_FIELD.encode() + b"@") and v},
            used=_used(h, codec.loads(g("backends") or "[]")),
        )


@dataclass(frozen=True)
class Snapshot:
    """A job set's state at one moment: its record and, when asked for, each job's status."""

    record: JobSetRecord
    statuses: list[JobStatus] | None = None

    @property
    def final(self) -> bool:
        return self.record.status.final
