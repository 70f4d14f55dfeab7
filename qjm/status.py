"""Statuses of jobs (chunks) and job sets, and which of them are final."""

from __future__ import annotations

import enum


class JobStatus(str, enum.Enum):
    """Status of one job of a set, in the order a job normally passes through them."""

    QUEUED = "QUEUED"
    TRANSPILING = "TRANSPILING"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in FINAL

    def __str__(self) -> str:
        return self.value


FINAL = frozenset({JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED})


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
