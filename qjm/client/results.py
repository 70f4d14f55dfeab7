"""``ManagedResults``: the results of a job set, addressed by global experiment (pub) index.

Results stay in Redis one value per job; a read loads only the jobs it needs (a few are kept),
so ``get_counts(i)`` on a large set costs one job's data. ``combine_results()`` and
``primitive_result()`` read every job, and are as large as the set.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, TypeAlias

from cachetools import LRUCache
from qiskit import QuantumCircuit
from qiskit.primitives import PrimitiveResult, PubResult
from qiskit.result import Result

from ..errors import ExperimentNotFoundError, JobSetFailedError, ResultNotAvailableError
from ..executors import Primitive, RunOptions
from ..formats import codec, outputs, stitch
from ..formats.pubs import Piece
from ..store import JobRecord, JobSetRecord, Store

Experiment: TypeAlias = int | str | QuantumCircuit
#: Jobs whose data a ``ManagedResults`` keeps in memory at once.
JOBS_KEPT = 4
_UNMEASURED = ("qjm runs measured circuits on samplers (counts and memory), so it has no {what}: compute it "
               "from the circuit without its measurements with qiskit.quantum_info.{how}.")


def experiment_index(experiment: Experiment, names: list[str | None], job_set_id: str) -> int:
    """Global index of an experiment given by index (negative counts from the end), by name, or
    by the circuit itself (its name); a name must identify exactly one experiment."""
    if isinstance(experiment, QuantumCircuit):
        experiment = experiment.name
    if isinstance(experiment, bool) or not isinstance(experiment, (int, str)):
        raise ExperimentNotFoundError(
            f"Identify an experiment by index, name or QuantumCircuit, not {type(experiment).__name__}.")
    if isinstance(experiment, int):
        n = len(names)
        if not -n <= experiment < n:
            raise ExperimentNotFoundError(f"Experiment index {experiment} is out of range: the set has {n}.")
        return experiment % n
    hits = [k for k, name in enumerate(names) if name == experiment]
    if not hits:
        raise ExperimentNotFoundError(f"No experiment named {experiment!r} in job set {job_set_id}.")
    if len(hits) > 1:
        raise ExperimentNotFoundError(
            f"{len(hits)} experiments are named {experiment!r} (indices {hits[:10]}); use an index instead.")
    return hits[0]


class ManagedResults:
    """Results of every experiment of a set, in the order given to ``run()``.

    Experiments are found by global index, by circuit name or by the circuit itself (its name).
    With ``partial=True`` results, experiments of failed jobs raise when asked for; ``success``
    is False and ``failed_experiments`` lists them.
    """

    def __init__(self, store: Store, rec: JobSetRecord, jobs: list[JobRecord], why: Callable[[JobRecord], str]) -> None:
        self._store = store
        self._rec = rec
        self._jobs = jobs
        self._why = why
        self._options = RunOptions.from_json(rec.options)
        self._names: list[str | None] = list(store.names(rec.id))
        self._starts = [a for a, _ in rec.job_bounds]
        self._cache: LRUCache[int, Any] = LRUCache(maxsize=JOBS_KEPT)
        self._legacy = None if self._options.pubs else store.outputs.legacy_combined(rec.id)
        # pub -> [(job, position in the job, piece)], for sets given as pubs
        self._pieces: dict[int, list[tuple[int, int, Piece]]] = {}
        if self._options.pubs:
            for i, job_pieces in enumerate(store.layout(rec.id) or []):
                for pos, raw in enumerate(job_pieces):
                    piece = Piece.from_json(raw)
                    self._pieces.setdefault(piece.pub, []).append((i, pos, piece))
            for entries in self._pieces.values():
                entries.sort(key=lambda e: (e[2].rows or (0, 0))[0])
        self._errors: dict[int, str] = {}
        for job in jobs:
            if job.status.value != "DONE":
                for k in self._experiments_of(job.index):
                    self._errors.setdefault(k, why(job))

    # ---------------------------------------------------------------- lookup
    @property
    def job_set_id(self) -> str:
        """The id of the set these results belong to."""
        return self._rec.id

    @property
    def success(self) -> bool:
        """Whether every experiment has a result."""
        return not self._errors

    @property
    def failed_experiments(self) -> list[int]:
        """Indexes of the experiments without a result (their job failed or was cancelled)."""
        return sorted(self._errors)

    @property
    def errors(self) -> dict[int, str]:
        """Why each experiment without a result has none."""
        return dict(self._errors)

    @property
    def backend_name(self) -> str:
        """The backend the set names (the old ``ManagedResults.backend_name``)."""
        return self._rec.backend

    @property
    def is_pub_set(self) -> bool:
        """Whether the set was given as pubs (its natural result is ``primitive_result()``)."""
        return self._options.pubs

    def __len__(self) -> int:
        return self._rec.n_experiments

    def index_of(self, experiment: Experiment) -> int:
        """Global index of an experiment; a name must identify exactly one experiment."""
        return experiment_index(experiment, self._names, self._rec.id)

    def _experiments_of(self, i: int) -> list[int]:
        if self._options.pubs:
            return sorted({k for k, entries in self._pieces.items() for j, _, _ in entries if j == i})
        a, b = self._rec.job_bounds[i]
        return list(range(a, b))

    def _job_of(self, k: int) -> int:
        return bisect.bisect_right(self._starts, k) - 1

    def _job_output(self, i: int) -> Any:
        """Job ``i``'s records or PrimitiveResult, read once and kept among the last few."""
        if i not in self._cache:
            raw = self._store.outputs.read(self._rec.id, i) if self._jobs[i].status.value == "DONE" else None
            if raw is None:
                self._cache[i] = None
            elif self._options.pubs:
                self._cache[i] = outputs.decode_result(raw)
            else:
                self._cache[i] = codec.loads(raw)
        return self._cache[i]

    def _record(self, k: int) -> dict[str, Any]:
        """Counts sets: experiment ``k``'s record."""
        if k in self._errors:
            raise ResultNotAvailableError(f"Experiment {k} has no result: {self._errors[k]}")
        if self._legacy is not None:  # a set finished before results were kept per job
            return dict(self._legacy["results"][k])
        i = self._job_of(k)
        records = self._job_output(i)
        if records is None:
            raise ResultNotAvailableError(f"Experiment {k} has no result: job {i} stored none (expired?).")
        return dict(records[k - self._rec.job_bounds[i][0]])

    # ---------------------------------------------------------------- counts API
    def _counts_record(self, k: int) -> dict[str, Any]:
        if not self._options.pubs:
            return self._record(k)
        if self._options.primitive != Primitive.SAMPLER.value:
            raise JobSetFailedError("This is an Estimator set: read primitive_result()[i].data.evs and .stds.")
        pub = self.pub_result(k)
        if pub.data.shape != ():
            raise JobSetFailedError(
                f"Experiment {k} is a sweep of shape {pub.data.shape}: read "
                f"primitive_result()[{k}].data.<register>.get_counts(index) for each parameter set.")
        return stitch.record_from_pub(pub, self._names[k] or str(k))

    def _one(self, k: int) -> Result:
        return Result.from_dict({"backend_name": self._rec.backend, "backend_version": "", "qobj_id": self._rec.id,
                                 "job_id": self._rec.id, "success": True, "results": [self._counts_record(k)]})

    def get_counts(self, experiment: Experiment) -> dict[str, int]:
        """Counts of one experiment, by its index in the set, its name or the circuit itself. Reads only the job that holds it."""
        return self._one(self.index_of(experiment)).get_counts(0)

    def get_memory(self, experiment: Experiment) -> list[str]:
        """One outcome per shot of one experiment (the set must have run with ``memory=True``)."""
        k = self.index_of(experiment)
        result = self._one(k)
        if "memory" not in result.results[0].data.to_dict():
            raise JobSetFailedError(f"Experiment {k} has no memory: run the job set with memory=True.")
        return result.get_memory(0)

    def data(self, experiment: Experiment) -> dict[str, Any]:
        """The experiment's data in ``qiskit.result.Result.data``'s shape: ``counts`` (and, run
        with ``memory=True``, ``memory``) keyed by hexadecimal outcomes, as the old Job Manager gave."""
        return self._one(self.index_of(experiment)).data(0)

    def get_statevector(self, experiment: Experiment | None = None, decimals: int | None = None) -> Any:
        """Not available: qjm runs measured circuits; use ``qiskit.quantum_info.Statevector(circuit)``."""
        raise ResultNotAvailableError(_UNMEASURED.format(what="statevector", how="Statevector(circuit)"))

    def get_unitary(self, experiment: Experiment | None = None, decimals: int | None = None) -> Any:
        """Not available: qjm runs measured circuits; use ``qiskit.quantum_info.Operator(circuit)``."""
        raise ResultNotAvailableError(_UNMEASURED.format(what="unitary", how="Operator(circuit)"))

    def combine_results(self) -> Result:
        """One ``qiskit.result.Result`` for the whole set (failed experiments marked
        unsuccessful). Reads every job: as large as the set."""
        results = []
        for k in range(len(self)):
            if k in self._errors:
                results.append(codec.failed_record(self._names[k] or str(k), self._errors[k]))
            else:
                results.append(self._counts_record(k))
        return Result.from_dict({"backend_name": self._rec.backend, "backend_version": "", "qobj_id": self._rec.id,
                                 "job_id": self._rec.id, "success": self.success, "results": results})

    # ---------------------------------------------------------------- primitives
    def pub_result(self, k: int) -> PubResult:
        """Pub ``k``'s result (stitched from its slices when it was split); raises a qjm error
        naming what is missing when a job that ran it failed."""
        if not self._options.pubs:
            if k in self._errors:
                return stitch.MissingPubResult(f"Pub {k} has no data: {self._errors[k]}")
            return stitch.pub_from_record(self._record(k))
        parts: list[PubResult] = []
        for i, pos, piece in self._pieces.get(k, []):
            result = self._job_output(i)
            if result is None:
                rows = "" if piece.rows is None else f" (rows {piece.rows[0]}:{piece.rows[1]} of its leading axis)"
                return stitch.MissingPubResult(f"Pub {k}{rows} has no data: {self._why(self._jobs[i])}")
            parts.append(result[pos])
        if not parts:
            raise JobSetFailedError(f"Pub {k} is in no job of set {self._rec.id}.")
        return stitch.join(parts)

    def primitive_result(self) -> PrimitiveResult:
        """A ``qiskit.primitives.PrimitiveResult`` with one pub result per pub, in input order.
        With ``partial=True`` results, a pub without data reads as a ``MissingPubResult``
        whose ``data`` raises a qjm error naming the pub (or slice) and why."""
        first_meta: dict[str, Any] = {}
        if self._options.pubs:
            for i, job in enumerate(self._jobs):
                if job.status.value == "DONE" and self._job_output(i) is not None:
                    first_meta = dict(self._job_output(i).metadata)
                    break
        meta = {**first_meta, "qjm": {"job_set_id": self._rec.id, "jobs": len(self._jobs)}}
        return PrimitiveResult([self.pub_result(k) for k in range(len(self))], metadata=meta)

    def __repr__(self) -> str:
        return f"<ManagedResults {self._rec.id}: {len(self)} experiments, {len(self._errors)} without result>"
