"""The service's records, jobs and batches, in IBM's own wire strings and JSON shapes.

The emulator stands for the service, not for qjm: statuses are ``Queued``/``Running``/
``Completed``/``Failed``/``Cancelled`` and batch states ``open``/``active``/``closed``, exactly
what the real client parses.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import Any

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "Queued", "Running", "Completed", "Failed", "Cancelled"
PENDING = (QUEUED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED)

#: Batch states: created, its first job has started, no longer running anything new.
OPEN, ACTIVE, CLOSED = "open", "active", "closed"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """An id shaped like IBM's (20 lowercase alphanumerics, starting with a letter)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "d" + "".join(secrets.choice(alphabet) for _ in range(19))


class ServiceError(Exception):
    """A refusal answered as the real service does: HTTP status plus ``{"errors": [...]}``."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status


#: The service's limits on a job's tags, refused with its codes 1204 (too many tags) and 1205 (a
#: tag too long). IBM's error registry names these limits without their values; qjm assumes the
#: same ones (``qjm.client.tags``), and a test keeps the two in step.
MAX_JOB_TAGS = 20
MAX_TAG_LENGTH = 100


def check_tags(tags: list[str]) -> list[str]:
    """A job's tags as the service takes them on a post or a ``PUT /jobs/{id}/tags``."""
    if len(tags) > MAX_JOB_TAGS:
        raise ServiceError(400, f"The number of tags ({len(tags)}) exceeds the maximum number of tags a job can have "
                                f"(max_tags = {MAX_JOB_TAGS}).", 1204)
    for tag in tags:
        if len(tag) > MAX_TAG_LENGTH:
            raise ServiceError(400, f"The tag {tag[:20]!r}... exceeds the maximum length a job tag can have "
                                    f"(max_length = {MAX_TAG_LENGTH}).", 1205)
    return tags


#: The instance other users' background jobs belong to: never this emulator's clients'.
OTHER_USERS = "crn:v1:bluemix:public:quantum-computing:us-east:a/other-users:other-users::"


@dataclass
class Job:
    """One posted job. ``fail`` holds the injected failure (reason, code) decided at post time.

    The schedule (``queues``): the job may start at ``start_due`` (monotonic) and then runs
    ``run_seconds``; ``end_at`` is set when it starts. ``outcome`` (reason, code, result) is
    what the runner computed; a job ends once both its run time is over and its outcome known.
    ``background``: another user's job (``Faults.background``): it takes its place in its
    device's queue, and nothing of this instance sees it.
    ``charge``: quantum seconds the job costs if it runs (``charges``), decided at post time;
    ``estimate``: the record's ``estimated_running_time_seconds``; ``charged``: what it did cost,
    set when it ends (None until then).
    """

    id: str
    seq: int
    instance: str
    backend: str
    program_id: str
    params: dict[str, Any]
    session_id: str | None
    tags: list[str]
    created: str
    start_due: float
    run_seconds: float
    fail: tuple[str, int | None] | None = None
    background: bool = False
    end_at: float | None = None
    outcome: tuple[str | None, int | None, str | None] | None = None
    charge: float = 0.0
    estimate: float | None = None
    charged: float | None = None
    started_at: float | None = None
    status: str = QUEUED
    simulated: bool = False
    reason: str | None = None
    reason_code: int | None = None
    result: str | None = None
    running: str | None = None
    finished: str | None = None
    #: What the job asked for, recorded by the runner before it runs (``programs.run_program``);
    #: kept after ``params`` are dropped, so tests can check what reached the service.
    received: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {"status": self.status}
        if self.reason:
            state["reason"] = self.reason
        if self.reason_code is not None:
            state["reasonCode"] = self.reason_code
        return {
            "id": self.id,
            "backend": self.backend,
            "state": state,
            "status": self.status,
            "program": {"id": self.program_id},
            "created": self.created,
            "session_id": self.session_id,
            "tags": list(self.tags),
            "runtime": "",
            "private": False,
            "user_id": "emulator",
            "estimated_running_time_seconds": self.estimate,
            # The service's JobResponse carries the job's usage; final once the job ended.
            "usage": {"seconds": self.charged or 0.0, "quantum_seconds": self.charged or 0.0},
        }


@dataclass
class Batch:
    """A batch (session). ``ttl`` is its lifetime in seconds from activation (None: no expiry);
    ``deadline`` is set, on the monotonic clock, once its first job runs."""

    id: str
    instance: str
    backend: str
    mode: str
    ttl: float | None
    created: str
    accepting_jobs: bool = True
    state: str = OPEN
    expired: bool = False
    activated: str | None = None
    closed: str | None = None
    deadline: float | None = None
    jobs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend_name": self.backend,
            "mode": self.mode,
            "state": self.state,
            "accepting_jobs": self.accepting_jobs,
            "max_ttl": self.ttl,
            "interactive_ttl": 0,
            "started_at": self.created,
            "created_at": self.created,
            "activated_at": self.activated,
            "closed_at": self.closed,
            "instance": self.instance,
        }
