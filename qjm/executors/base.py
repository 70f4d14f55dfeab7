"""The executor protocol: how the pipeline talks to any backend.

The pipeline (``qjm.pipeline``) owns state and ordering; an executor only knows its backend.
A local executor simulates inside ``submit`` and hands the records back at once; a remote one
posts a job and is polled later. Either way the pipeline sees the same four verbs.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from qiskit import QuantumCircuit
from qiskit.providers import BackendV2


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for, per job set; travels as JSON in the job-set record."""

    shots: int = 1024
    memory: bool = False
    seed_simulator: int | None = None
    optimization_level: int = 2

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunOptions":
        return cls(**data)


class RemoteState(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (RemoteState.DONE, RemoteState.ERROR, RemoteState.CANCELLED)


@dataclass(frozen=True)
class Poll:
    state: RemoteState
    error: str | None = None


@dataclass(frozen=True)
class Submission:
    """A posted job. ``records`` is set when the executor already has the results (local runs)."""

    remote_id: str
    records: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class SubmitContext:
    """Who is submitting: lets a remote executor tag, batch and de-duplicate jobs."""

    job_set_id: str
    chunk: int
    session_id: str | None = None
    tags: list[str] = field(default_factory=list)


class Executor(ABC):
    """One backend. Instances are cached per worker process, so keep them cheap to reuse."""

    #: True when ``submit`` does the computation itself (it belongs on the CPU queue).
    local: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def backend(self) -> BackendV2:
        """The backend whose target circuits are transpiled for."""

    @abstractmethod
    def submit(self, circuits: list[QuantumCircuit], options: RunOptions, ctx: SubmitContext) -> Submission:
        """Start (or, locally, run) one job of ISA circuits."""

    def find_submitted(self, ctx: SubmitContext) -> str | None:
        """The remote id of a job already posted for this chunk, if the backend can tell."""
        return None

    def poll(self, remote_id: str) -> Poll:
        raise NotImplementedError

    def fetch(self, remote_id: str, circuits: list[QuantumCircuit], options: RunOptions) -> list[dict[str, Any]]:
        """Experiment records (see ``qjm.codec``) of a DONE job, in circuit order."""
        raise NotImplementedError

    def cancel(self, remote_id: str) -> None:
        """Best effort: ask the backend to stop a job."""

    def open_session(self, job_set_id: str) -> str | None:
        """Open a batch for a job set; returns its id (None when the backend has no such thing)."""
        return None

    def close_session(self, session_id: str, cancel: bool = False) -> None:
        """Close (or cancel) the batch opened by ``open_session``."""

    @property
    def throttled(self) -> bool:
        """Whether pending jobs on this backend count against ``QJM_MAX_PENDING_JOBS``."""
        return not self.local
