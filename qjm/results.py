"""``ManagedResults``: the combined result of a job set, addressed by global experiment index."""

from __future__ import annotations

from typing import Any, TypeAlias

from qiskit import QuantumCircuit
from qiskit.result import Result

from .errors import ExperimentNotFoundError, JobSetFailedError

Experiment: TypeAlias = int | str | QuantumCircuit


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
    """Results of every experiment of a set, in the order the circuits were given to ``run()``.

    Experiments are found by global index, by circuit name or by the circuit itself (its name).
    With ``partial=True`` results, experiments of failed jobs raise when asked for; ``success``
    is False and ``failed_experiments`` lists them.
    """

    def __init__(self, job_set_id: str, combined: dict[str, Any], errors: dict[int, str]) -> None:
        self._job_set_id = job_set_id
        self._raw = combined
        self._result = Result.from_dict(combined)
        self._errors = errors  # global experiment index -> why it has no result
        self._names = [r.get("header", {}).get("name") for r in combined["results"]]

    @property
    def success(self) -> bool:
        return not self._errors

    @property
    def failed_experiments(self) -> list[int]:
        return sorted(self._errors)

    def __len__(self) -> int:
        return len(self._names)

    def index_of(self, experiment: Experiment) -> int:
        """Global index of an experiment; a name must identify exactly one experiment."""
        return experiment_index(experiment, self._names, self._job_set_id)

    def _checked(self, experiment: Experiment) -> int:
        k = self.index_of(experiment)
        if k in self._errors:
            raise JobSetFailedError(f"Experiment {k} has no result: {self._errors[k]}")
        return k

    def get_counts(self, experiment: Experiment) -> dict[str, int]:
        return self._result.get_counts(self._checked(experiment))

    def get_memory(self, experiment: Experiment) -> list[str]:
        k = self._checked(experiment)
        if "memory" not in self._raw["results"][k].get("data", {}):
            raise JobSetFailedError(f"Experiment {k} has no memory: run the job set with memory=True.")
        return self._result.get_memory(k)

    def combine_results(self) -> Result:
        """One ``qiskit.result.Result`` for the whole set (failed experiments marked unsuccessful)."""
        return self._result

    def __repr__(self) -> str:
        return f"<ManagedResults {self._job_set_id}: {len(self)} experiments, {len(self._errors)} without result>"
