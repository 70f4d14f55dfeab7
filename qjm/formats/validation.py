"""Checking ``run()``'s input and splitting it into jobs, before anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qiskit import QuantumCircuit
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import BackendV2

from ..client.tags import check_user_tags
from ..engine.retries import MAX_RETRIES
from ..errors import InvalidInputError
from ..executors.base import Primitive

_PUB_TYPES = (QuantumCircuit, tuple, SamplerPub, EstimatorPub)


def as_experiment_list(experiments: Any) -> list[Any]:
    """One circuit or pub, or an iterable of them, checked item by item."""
    if isinstance(experiments, (QuantumCircuit, SamplerPub, EstimatorPub)):
        return [experiments]
    what = "run() takes QuantumCircuits or pubs (tuples such as (circuit, parameter_values)), or a list of them"
    if isinstance(experiments, tuple) and experiments and all(isinstance(e, QuantumCircuit) for e in experiments):
        return list(experiments)
    if experiments is None or isinstance(experiments, (str, bytes, tuple)):
        hint = "; wrap a single pub in a list" if isinstance(experiments, tuple) else ""
        raise InvalidInputError(f"{what}, not {type(experiments).__name__}{hint}.")
    try:
        items = list(experiments)
    except TypeError:
        raise InvalidInputError(f"{what}, not {type(experiments).__name__}.") from None
    if not items:
        raise InvalidInputError("run() got no circuits: pass at least one QuantumCircuit or pub.")
    for k, item in enumerate(items):
        if not isinstance(item, _PUB_TYPES):
            raise InvalidInputError(
                f"Experiment {k} is a {type(item).__name__}, not a QuantumCircuit or pub; "
                "pass Qiskit circuits (load QASM with qiskit.qasm2/qasm3 first) or pub tuples.")
    return items


def check_primitive(primitive: Any) -> Primitive:
    try:
        return Primitive(primitive)
    except ValueError:
        raise InvalidInputError(f"primitive must be 'sampler' or 'estimator', got {primitive!r}.") from None


#: Options qjm sets itself on every job; the user gives them as ``run()``'s own arguments.
_OWNED = {"default_shots": "shots=", "default_precision": "precision="}


def check_primitive_options(primitive: Primitive, options: Any) -> dict[str, Any] | None:
    """The primitive's options as the service's own option models take them, or a qjm error
    naming what they refuse."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise InvalidInputError(f"options must be a dict of {primitive.value} options, e.g. "
                                "{'twirling': {'enable_measure': True}}, not " f"{type(options).__name__}.")
    for key, arg in _OWNED.items():
        if key in options:
            raise InvalidInputError(f"options[{key!r}] is set by qjm: pass {arg} to run() instead.")
    if (options.get("environment") or {}).get("job_tags"):
        raise InvalidInputError("options['environment']['job_tags'] is set by qjm: pass job_tags= to run() instead.")
    from pydantic import ValidationError
    from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions
    from qiskit_ibm_runtime.options_models.sampler import SamplerOptions

    model = SamplerOptions if primitive is Primitive.SAMPLER else EstimatorOptions
    try:
        model(**options)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise InvalidInputError(f"options the {primitive.value} does not take: " + "; ".join(lines)) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"options the {primitive.value} does not take: {exc}") from None
    return dict(options)


def check_pub_widths(pubs: list[Any], width: int, backend_name: str) -> None:
    too_wide = [k for k, pub in enumerate(pubs) if pub.circuit.num_qubits > width]
    if too_wide:
        k = too_wide[0]
        raise InvalidInputError(
            f"Experiment {k} ({pubs[k].circuit.name!r}) uses {pubs[k].circuit.num_qubits} qubits but {backend_name} "
            f"has {width}; choose a larger backend or smaller circuits.")


def _has_measurement(circuit: QuantumCircuit) -> bool:
    """Most circuits end with a measurement: looking at the last instruction first, and counting
    operations (done in Qiskit's native code) only otherwise, keeps 50,000 circuits under 0.4 s."""
    data = circuit.data
    return (len(data) > 0 and data[-1].operation.name == "measure") or "measure" in circuit.count_ops()


def check_circuits(circuits: list[QuantumCircuit], backend: BackendV2, backend_name: str) -> None:
    width = backend.num_qubits  # read once: AerSimulator rebuilds its whole target on every read
    too_wide = [k for k, c in enumerate(circuits) if c.num_qubits > width]
    if too_wide:
        k = too_wide[0]
        raise InvalidInputError(
            f"Experiment {k} ({circuits[k].name!r}) uses {circuits[k].num_qubits} qubits but {backend_name} has "
            f"{width}" + (f" ({len(too_wide)} circuits are too wide)" if len(too_wide) > 1 else "")
            + "; choose a larger backend or smaller circuits.")
    unmeasured = [k for k, c in enumerate(circuits) if not _has_measurement(c)]
    if unmeasured:
        k = unmeasured[0]
        raise InvalidInputError(
            f"Experiment {k} ({circuits[k].name!r}) has no measurements, so it would return no counts"
            + (f" ({len(unmeasured)} circuits lack measurements)" if len(unmeasured) > 1 else "")
            + "; add measure_all() or measure() to it.")


def check_options(max_experiments_per_job: int | None, shots: int | None, optimization_level: int,
                  max_executions: int) -> None:
    """``run()``'s own arguments (the primitive's options are ``check_primitive_options``)."""
    if max_experiments_per_job is not None and (not isinstance(max_experiments_per_job, int)
                                                or isinstance(max_experiments_per_job, bool)
                                                or max_experiments_per_job < 1):
        raise InvalidInputError(
            f"max_experiments_per_job must be a whole number of at least 1, got {max_experiments_per_job!r}.")
    if shots is None:  # the Estimator: sized by precision (qjm.engine.partition)
        pass
    elif not isinstance(shots, int) or isinstance(shots, bool) or shots < 1:
        raise InvalidInputError(f"shots must be a whole number of at least 1, got {shots!r}.")
    elif shots > max_executions:
        raise InvalidInputError(
            f"shots={shots} is more than one job may run (QJM_MAX_EXECUTIONS_PER_JOB = {max_executions} "
            "circuits x shots); use fewer shots, or raise QJM_MAX_EXECUTIONS_PER_JOB if the backend allows it.")
    if optimization_level not in (0, 1, 2, 3):
        raise InvalidInputError(f"optimization_level must be 0, 1, 2 or 3, got {optimization_level!r}.")


def check_tags(tags: Iterable[str] | None) -> list[str]:
    """The user's job tags, within qjm's and the service's rules (``qjm.client.tags``)."""
    return check_user_tags(tags, "job_tags")


def check_max_retries(max_retries: Any) -> int:
    """How often a job whose failure is transient (``qjm.engine.retries``) may run again."""
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidInputError(
            f"max_retries must be a whole number from 0 to {MAX_RETRIES}, got {max_retries!r}.")
    return max_retries


def experiments_per_job(requested: int | None, backend_limit: int | None, shots: int,
                        default: int, max_executions: int) -> int:
    """The job size: what the caller asked (or the default), within the backend's limits."""
    size = requested if requested is not None else default
    if backend_limit:
        size = min(size, backend_limit)
    return max(1, min(size, max_executions // shots))


def split(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of at most ``size`` experiments."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]
