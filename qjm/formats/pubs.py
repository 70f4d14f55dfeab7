"""Pubs as ``run()`` takes them: coerced by Qiskit's own pub rules, checked, cut into pieces.

A *piece* is a whole pub or a slice of rows along the leading axis of its broadcast shape; a
job runs pieces. Pieces travel as their circuit (QPY, with the job's other circuits) plus a
JSON entry holding the rest: parameter values (in the order of the circuit's parameter
names), observables (``ObservablesArray.tolist()``), shots or precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives.containers.bindings_array import BindingsArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.observables_array import ObservablesArray
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import Pauli, SparseObservable, SparsePauliOp

from ..errors import InvalidInputError
from ..executors.base import Primitive

Pub: TypeAlias = SamplerPub | EstimatorPub
#: The Estimator's own default precision (``EstimatorOptions.default_precision``).
DEFAULT_PRECISION = 0.015625
_OBSERVABLE_TYPES = (str, Pauli, SparsePauliOp, SparseObservable, ObservablesArray)


def _looks_like_observables(value: Any) -> bool:
    if isinstance(value, _OBSERVABLE_TYPES) or (isinstance(value, dict) and value):
        return True
    if isinstance(value, (list, tuple)) and value:
        return _looks_like_observables(value[0])
    return False


def _has_measurement(circuit: QuantumCircuit) -> bool:
    return circuit.num_clbits > 0 and any(inst.operation.name == "measure" for inst in circuit.data)


def is_plain(experiment: Any) -> bool:
    """A measured circuit without parameters: what the counts API has always taken."""
    return isinstance(experiment, QuantumCircuit) and not experiment.num_parameters


def coerce(experiment: Any, k: int, primitive: Primitive, shots: int | None, precision: float | None) -> Pub:
    """One pub from what the user gave, by Qiskit's rules, or a qjm error saying what to fix."""
    if primitive is Primitive.SAMPLER:
        if isinstance(experiment, EstimatorPub):
            raise InvalidInputError(f"Experiment {k} is an EstimatorPub: pass primitive='estimator'.")
        if isinstance(experiment, tuple) and len(experiment) >= 2 and _looks_like_observables(experiment[1]):
            raise InvalidInputError(
                f"Experiment {k} looks like an Estimator pub (circuit, observables, ...): pass primitive='estimator', "
                "or give the Sampler (circuit, parameter_values[, shots]).")
        if isinstance(experiment, tuple) and len(experiment) > 3:
            raise InvalidInputError(f"Experiment {k}: a Sampler pub is (circuit, parameter_values, shots) at most, "
                                    f"not {len(experiment)} items.")
        if isinstance(experiment, tuple) and len(experiment) == 3 and experiment[2] is not None:
            _check_shots(experiment[2], f"Experiment {k}'s shots")
        try:
            pub: Pub = SamplerPub.coerce(experiment, shots)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"Experiment {k} is not a valid Sampler pub: {exc}") from None
        if not _has_measurement(pub.circuit):
            raise InvalidInputError(f"Experiment {k} ({pub.circuit.name!r}) has no measurements, so the Sampler "
                                    "would return no data; add measure_all() or measure() to it.")
        return pub
    if isinstance(experiment, SamplerPub):
        raise InvalidInputError(f"Experiment {k} is a SamplerPub: pass primitive='sampler' (the default).")
    if isinstance(experiment, QuantumCircuit) or (isinstance(experiment, tuple) and len(experiment) < 2):
        raise InvalidInputError(f"Experiment {k}: an Estimator pub needs observables: give (circuit, observables"
                                "[, parameter_values[, precision]]).")
    if isinstance(experiment, tuple) and not _looks_like_observables(experiment[1]):
        raise InvalidInputError(
            f"Experiment {k}: the second item of an Estimator pub must be observables (Pauli strings, "
            f"SparsePauliOp or arrays of them), not {type(experiment[1]).__name__}; for the Sampler pass "
            "primitive='sampler'.")
    if isinstance(experiment, tuple) and len(experiment) == 4 and experiment[3] is not None:
        _check_precision(experiment[3], f"Experiment {k}'s precision")
    try:
        pub = EstimatorPub.coerce(experiment, precision)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"Experiment {k} is not a valid Estimator pub: {exc}") from None
    return pub


def _check_shots(shots: Any, what: str) -> None:
    if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
        raise InvalidInputError(f"{what} must be a whole number of at least 1, got {shots!r}.")


def _check_precision(precision: Any, what: str) -> None:
    if not isinstance(precision, (int, float, np.floating)) or isinstance(precision, bool) or not precision > 0:
        raise InvalidInputError(f"{what} must be a number above 0 (e.g. 0.01), got {precision!r}.")


def check_defaults(primitive: Primitive, shots: int, precision: float | None, shots_given: bool) -> None:
    _check_shots(shots, "shots")
    if precision is not None:
        if primitive is Primitive.SAMPLER:
            raise InvalidInputError("precision is the Estimator's: the Sampler takes shots (per pub or shots=).")
        _check_precision(precision, "precision")
    if primitive is Primitive.ESTIMATOR and shots_given:
        raise InvalidInputError("The Estimator takes a precision, not shots: pass precision= (or one per pub); "
                                "shots needed are 1/precision**2.")


def as_pubs(experiments: Sequence[Any], primitive: Primitive, shots: int, precision: float | None) -> list[Pub]:
    default_precision = precision if precision is not None else DEFAULT_PRECISION
    return [coerce(e, k, primitive, shots if primitive is Primitive.SAMPLER else None, default_precision)
            for k, e in enumerate(experiments)]


# ---------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Piece:
    """Pub ``pub`` whole (``rows`` None) or its rows ``rows[0]:rows[1]`` of the leading axis."""

    pub: int
    rows: tuple[int, int] | None = None

    def to_json(self) -> list[Any]:
        return [self.pub, None if self.rows is None else list(self.rows)]

    @classmethod
    def from_json(cls, data: list[Any]) -> Piece:
        return cls(int(data[0]), None if data[1] is None else (int(data[1][0]), int(data[1][1])))


def _rows(array_shape: tuple[int, ...], pub_shape: tuple[int, ...], a: int, b: int) -> slice | None:
    """The slice of an array broadcast into ``pub_shape`` that gives rows ``a:b``; None when the
    array has no leading axis of its own (it broadcasts into every row)."""
    if len(array_shape) < len(pub_shape) or array_shape[0] == 1:
        return None
    return slice(a, b)


def values_array(pub: Pub) -> np.ndarray | None:
    """The pub's parameter values as one array ``(*shape, n_params)`` in the order of the
    circuit's parameters (sorted by name, as QPY keeps them)."""
    if not pub.circuit.num_parameters:
        return None
    return np.asarray(pub.parameter_values.as_array(pub.circuit.parameters), dtype=float)


def slice_pub(pub: Pub, rows: tuple[int, int] | None) -> Pub:
    """The pub restricted to rows ``a:b`` of the leading axis of its broadcast shape."""
    if rows is None:
        return pub
    a, b = rows
    values = values_array(pub)
    if values is not None:
        cut = _rows(values.shape[:-1], pub.shape, a, b)
        values = values if cut is None else values[cut]
    bindings = None if values is None else BindingsArray({tuple(pub.circuit.parameters): values})
    if isinstance(pub, SamplerPub):
        return SamplerPub(pub.circuit, bindings, pub.shots)
    obs = pub.observables
    cut = _rows(obs.shape, pub.shape, a, b)
    return EstimatorPub(pub.circuit, obs if cut is None else obs[cut], bindings, pub.precision)


def piece_entry(pub: Pub, piece: Piece) -> dict[str, Any]:
    """The JSON half of a piece (its circuit goes to QPY)."""
    part = slice_pub(pub, piece.rows)
    values = values_array(part)
    entry: dict[str, Any] = {"piece": piece.to_json(),
                             "params": [p.name for p in part.circuit.parameters],
                             "values": None if values is None else values.tolist()}
    if isinstance(part, SamplerPub):
        entry["shots"] = part.shots
    else:
        entry["observables"] = part.observables.tolist()
        entry["precision"] = part.precision
    return entry


def from_entry(circuit: QuantumCircuit, entry: dict[str, Any], primitive: Primitive) -> Pub:
    """The piece's pub on ``circuit`` (the input circuit, or its ISA form: observables are then
    laid out on its final layout, and values bound by parameter name)."""
    bindings = None
    if entry["values"] is not None:
        bindings = BindingsArray({tuple(entry["params"]): np.asarray(entry["values"], dtype=float)})
    if primitive is Primitive.SAMPLER:
        return SamplerPub(circuit, bindings, int(entry["shots"]))
    obs = ObservablesArray(entry["observables"])
    layout = getattr(circuit, "layout", None)
    if layout is not None or obs.num_qubits != circuit.num_qubits:
        obs = obs.apply_layout(layout, num_qubits=circuit.num_qubits)
    return EstimatorPub(circuit, obs, bindings, float(entry["precision"]))
