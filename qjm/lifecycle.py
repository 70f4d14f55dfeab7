"""The one definition of a job's and a job set's lifecycle.

Everything that orders, labels or maps statuses takes it from here: the Redis scripts get each
status's rank as an argument (a new status needs no change inside Redis), and the report, the
progress bars and the metrics iterate these enums. The service's own status strings map onto
``JobStatus`` through ``REMOTE_STATUS``; the emulator keeps IBM's wire strings, since it stands
for the service, not for qjm.

A job moves forward only::

    QUEUED -> TRANSPILING -> TRANSPILED -> [HELD ->] [SUBMITTED ->] RUNNING -> DONE | ERROR | CANCELLED

SUBMITTED (posted to a remote service, pending there) is skipped by local jobs, which run in
the worker. HELD is a remote job that waits unposted for QPU time (``qjm.usage``): its set's
budget, its instance's month, or the service's own limit; it goes on to SUBMITTED by itself once
there is time, or ends CANCELLED with its set. A final status never changes.

Old code compares a job's status with ``qiskit.providers.JobStatus``: a ``JobStatus`` equals the
Qiskit member of the same meaning (``QISKIT_EQUIVALENT``; HELD has none), and those of the same name hash alike.
"""

from __future__ import annotations

import enum
from typing import Any

from qiskit.providers import JobStatus as QiskitJobStatus


class JobStatus(str, enum.Enum):
    """Status of one job of a set, in the order a job passes through them."""

    QUEUED = "QUEUED"
    TRANSPILING = "TRANSPILING"
    TRANSPILED = "TRANSPILED"
    HELD = "HELD"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def rank(self) -> float:
        """Position in the lifecycle; every final status shares the highest rank."""
        return RANK[self]

    def __str__(self) -> str:
        return self.value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QiskitJobStatus):
            return QISKIT_EQUIVALENT.get(self) is other
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    # Defining __eq__ drops the inherited hash: keep str's, which equals Qiskit's for the same
    # name (an Enum member hashes by its name), so DONE and Qiskit's DONE meet in sets and dicts.
    __hash__ = str.__hash__


FINAL = frozenset({JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED})
#: The Qiskit status each qjm status means. QUEUED, TRANSPILING and TRANSPILED (the job is still
#: with qjm, not on any backend) have none; SUBMITTED is queued on the service, Qiskit's QUEUED.
QISKIT_EQUIVALENT: dict[JobStatus, QiskitJobStatus] = {
    JobStatus.SUBMITTED: QiskitJobStatus.QUEUED,
    JobStatus.RUNNING: QiskitJobStatus.RUNNING,
    JobStatus.DONE: QiskitJobStatus.DONE,
    JobStatus.ERROR: QiskitJobStatus.ERROR,
    JobStatus.CANCELLED: QiskitJobStatus.CANCELLED,
}
#: The error of a job cancelled because its set was: the same words whichever process moved it.
CANCELLED_BY_USER = "cancelled by user"
#: The error of a job the user cancelled alone (``ManagedJob.cancel``); the rest of its set goes on.
JOB_CANCELLED_BY_USER = "cancelled by user (this job alone; the rest of its set went on)"
USER_CANCELS = (CANCELLED_BY_USER, JOB_CANCELLED_BY_USER)
#: Ranks are stored with each job in Redis, so a status added later takes a rank between two
#: existing ones (HELD: between TRANSPILED and SUBMITTED) and jobs written before keep theirs.
_ORDERED = [s for s in JobStatus if s not in FINAL and s is not JobStatus.HELD]
#: Final statuses share one rank, so none of them can follow another.
FINAL_RANK = len(_ORDERED)
RANK: dict[JobStatus, float] = {**{s: k for k, s in enumerate(_ORDERED)}, **{s: FINAL_RANK for s in FINAL}}
RANK[JobStatus.HELD] = RANK[JobStatus.TRANSPILED] + 0.5
#: Statuses before a job is running anywhere (the report counts them as pending; HELD apart).
PENDING = frozenset({JobStatus.QUEUED, JobStatus.TRANSPILING, JobStatus.TRANSPILED, JobStatus.SUBMITTED})


class Step(str, enum.Enum):
    """The step an unfinished job waits for; each is one Celery task (``qjm.engine.tasks.STEP_TASKS``)."""

    TRANSPILE = "transpile"
    SUBMIT = "submit"
    POLL = "poll"


class JobSetStatus(str, enum.Enum):
    """Status of a whole set. ERROR means some jobs failed; the others still have results."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self is not JobSetStatus.RUNNING

    def __str__(self) -> str:
        return self.value


#: The IBM client's job status (``RuntimeJobV2.status()``, or the API's own words) -> qjm's.
REMOTE_STATUS: dict[str, JobStatus] = {
    "INITIALIZING": JobStatus.SUBMITTED,
    "VALIDATING": JobStatus.SUBMITTED,
    "QUEUED": JobStatus.SUBMITTED,
    "RUNNING": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "COMPLETED": JobStatus.DONE,
    "ERROR": JobStatus.ERROR,
    "FAILED": JobStatus.ERROR,
    "CANCELLED": JobStatus.CANCELLED,
}


def remote_status(status: Any) -> JobStatus | None:
    """A client's status (a string, or a ``qiskit.providers.JobStatus`` enum for local jobs) as
    qjm's, or None when the word is unknown."""
    name = getattr(status, "name", None) or str(status)
    return REMOTE_STATUS.get(name.rsplit(".", 1)[-1].strip().upper())


def job_set_outcome(statuses: set[JobStatus], cancel_requested: bool) -> JobSetStatus:
    """The final status of a set whose jobs are all final."""
    if cancel_requested:
        return JobSetStatus.CANCELLED
    if statuses == {JobStatus.DONE}:
        return JobSetStatus.DONE
    return JobSetStatus.ERROR
