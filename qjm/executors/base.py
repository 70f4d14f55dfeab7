"""The executor protocol: how the pipeline talks to any backend.

The pipeline owns state and ordering; an executor only knows its backend. A job is a list of
ISA *pubs* of one primitive (``JobWork``): the counts API sends each circuit as a Sampler pub
``(circuit,)``; Sampler sweeps and Estimator pubs travel the same way. A local executor
simulates inside ``submit`` and hands the records back at once; a remote one posts a job and
is polled later. Either way the pipeline sees the same verbs.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

from qiskit import QuantumCircuit
from qiskit.primitives import PrimitiveResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import BackendV2

from ..lifecycle import JobStatus

Pub: TypeAlias = SamplerPub | EstimatorPub


class Primitive(str, enum.Enum):
    SAMPLER = "sampler"
    ESTIMATOR = "estimator"


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for, per job set; travels as JSON in the job-set record."""

    shots: int = 1024
    memory: bool = False
    seed_simulator: int | None = None
    optimization_level: int = 2
    primitive: str = Primitive.SAMPLER.value
    #: Estimator default precision (a pub's own precision wins).
    precision: float | None = None
    #: The primitive's own options (``SamplerOptions``/``EstimatorOptions`` fields as a dict),
    #: validated at ``run()``; qjm owns ``default_shots``, ``default_precision`` and job tags.
    primitive_options: dict[str, Any] | None = None
    #: The set was given as pubs: its jobs store ``PrimitiveResult``s (``qjm.formats.outputs``), not
    #: experiment records, and every pub keeps its own shape.
    pubs: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOptions:
        return cls(**data)


@dataclass(frozen=True)
class JobWork:
    """What one job runs: ISA pubs of one primitive, with the set's options."""

    pubs: list[Pub]
    options: RunOptions
    #: What ``Executor.prepare`` made of these pubs in the CPU step (JSON text), if anything.
    prepared: str | None = None

    @property
    def primitive(self) -> Primitive:
        return Primitive(self.options.primitive)

    @property
    def circuits(self) -> list[QuantumCircuit]:
        return [pub.circuit for pub in self.pubs]

    @classmethod
    def from_circuits(cls, circuits: list[QuantumCircuit], options: RunOptions) -> JobWork:
        """The counts API's job: one Sampler pub per measured circuit, at the set's shots."""
        return cls([SamplerPub.coerce(c, options.shots) for c in circuits], options)


@dataclass(frozen=True)
class Poll:
    """A remote job's status in qjm's words (``qjm.lifecycle.REMOTE_STATUS``), and its error.
    ``repost`` says a failed job never ran for a reason of the service's (its batch ended before
    it started): it is posted again as a new attempt."""

    status: JobStatus
    error: str | None = None
    repost: bool = False
    #: QPU seconds the service charged, when its answer says so (a final job's ``usage``).
    charge: float | None = None
    #: The service's estimate of the job's QPU seconds, when its answer carries one.
    service_estimate: float | None = None


#: What a job produced: experiment records (``qjm.formats.codec``; the counts API's local fast path) or
#: the primitive's own ``PrimitiveResult``. The runner stores either in the set's result format.
Output: TypeAlias = "list[dict[str, Any]] | PrimitiveResult"


@dataclass(frozen=True)
class Submission:
    """A posted job. ``output`` is set when the executor already has the results (local runs)."""

    remote_id: str
    output: Output | None = None


@dataclass(frozen=True)
class SubmitContext:
    """Who is submitting: lets a remote executor tag, batch and de-duplicate jobs."""

    job_set_id: str
    job: int
    attempt: int = 1
    batch_id: str | None = None
    tags: list[str] = field(default_factory=list)
    #: Called right before the job leaves for the service (after any request the client makes
    #: first); raises to stop the post. The runner fences posts with its posting lock.
    fence: Callable[[], None] | None = None


class Executor(ABC):
    """One backend. Instances are cached per worker process, so keep them cheap to reuse."""

    #: True when ``submit`` does the computation itself (it belongs on the CPU queue).
    local: bool = False

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def backend(self) -> BackendV2:
        """The backend whose target circuits are transpiled for."""

    def transpile_for(self, primitive: Primitive) -> dict[str, Any]:
        """What a job's circuits are transpiled for (``generate_preset_pass_manager``'s keyword
        arguments): the backend's target, unless the primitive needs another basis."""
        return {"backend": self.backend()}

    @abstractmethod
    def submit(self, work: JobWork, ctx: SubmitContext) -> Submission:
        """Start (or, locally, run) one job."""

    def find_submitted(self, ctx: SubmitContext) -> str | None:
        """The remote id of a job already posted for this job and attempt, if the backend can tell."""
        return None

    def poll(self, remote_id: str) -> Poll:
        raise NotImplementedError

    def prepare(self, work: JobWork) -> str | None:
        """CPU-heavy client-side preparation of a job (e.g. the Estimator's program), run in the
        transpile step so that a post never computes while it holds a slot or the posting lock.
        Returns JSON text, stored with the job and handed back as ``work.prepared``."""
        return None

    def executions(self, work: JobWork) -> list[tuple[QuantumCircuit, int]]:
        """Each circuit the job will run with its executions (shots times the points it is
        run at), for its QPU-time estimate (``qjm.usage.estimate``): one per pub by default."""
        from ..usage.estimate import pub_executions

        return pub_executions(work.pubs, work.options.precision)

    def ready_to_post(self, work: JobWork) -> JobWork:
        """``work`` with what ``submit`` would compute before its post already done (a remote
        executor's client-side preparation), so that a post from a freed slot is little more
        than its request. As it is by default."""
        return work

    def fetch(self, remote_id: str, work: JobWork) -> Output:
        """The results of a DONE job, one pub result per pub in order."""
        raise NotImplementedError

    def cancel(self, remote_id: str) -> None:
        """Best effort: ask the backend to stop a job."""

    def usage(self, remote_id: str) -> float | None:
        """QPU seconds the service charged for a final job (one request), None if it cannot say."""
        return None

    def instance_usage(self) -> dict[str, Any] | None:
        """The service's usage figures for the account's instance (``service.usage()``), or None
        for a backend without QPU time (local simulators)."""
        return None

    def update_tags(self, remote_id: str, tags: list[str]) -> None:
        """Replace a posted job's tags on the backend (a backend without tags has nothing to do)."""

    def open_batch(self, job_set_id: str) -> str | None:
        """Open a batch for a job set; returns its id (None when the backend has no such thing)."""
        return None

    def close_batch(self, batch_id: str, cancel: bool = False) -> None:
        """Close (or cancel) the batch opened by ``open_batch``."""
