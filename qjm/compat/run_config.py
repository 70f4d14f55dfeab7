"""The old Job Manager's ``run(..., job_share_level=..., **run_config)``.

The old one handed ``run_config`` to ``assemble``; qjm runs circuits through a Sampler, where
most of those keys have no counterpart. ``parameter_binds`` has one: every circuit is bound with
every bind, circuit by circuit (m circuits x n binds -> m*n experiments, in ``assemble``'s order),
before the set is split into jobs. Keys that can only mean what qjm already does are accepted;
the others are refused with what to do instead.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector

from ..errors import InvalidInputError

#: Keys whose only value qjm can honour is the one it always uses (a Sampler returns classified
#: outcomes of qubits it initialises): that value is accepted, any other refused.
ONLY_VALUE: dict[str, tuple[Any, str]] = {
    "meas_level": (2, "qjm returns classified counts (meas_level=2) only; kerneled or raw levels are pulse-level "
                      "data no Sampler returns."),
    "init_qubits": (True, "qjm's Sampler initialises qubits before each shot; pass options={'execution': "
                          "{'init_qubits': False}} to run the set through the Sampler with that option."),
}
#: Keys that mean nothing at meas_level 2 (Qiskit ignored them there too).
IGNORED_AT_LEVEL_2 = frozenset({"meas_return"})
#: Keys that cannot apply, and what to do instead.
REFUSED: dict[str, str] = {
    "rep_delay": "pass options={'execution': {'rep_delay': seconds}} (a Sampler option) instead.",
    "rep_time": "IBM Quantum no longer takes a repetition time; options={'execution': {'rep_delay': s}} sets the "
                "delay between shots.",
    "qobj_id": "qjm makes no Qobj; name the set with name= and label it with job_tags=.",
    "qobj_header": "qjm makes no Qobj; name the set with name= and label it with job_tags=.",
    "max_credits": "IBM Quantum no longer charges credits; a set's QPU time is in its jobs' usage.",
    "memory_slots": "the circuits' classical registers decide the memory slots.",
    "memory_slot_size": "that is pulse-level data (meas_level 0), which no Sampler returns.",
    **{key: "pulse schedules and their settings are gone from Qiskit 2; qjm runs circuits."
       for key in ("schedule_los", "qubit_lo_freq", "meas_lo_freq", "qubit_lo_range", "meas_lo_range",
                   "parametric_pulses", "pulse_library", "meas_map", "rep_times")},
}


def warn_job_share_level(job_share_level: Any) -> None:
    """Accepted, as the last old release accepted it, with a warning that it means nothing now."""
    if job_share_level is not None:
        warnings.warn("job_share_level has no meaning any more: IBM Quantum no longer shares jobs by level, so "
                      "qjm ignores it. Remove it from the call.", UserWarning, stacklevel=3)


def check_run_config(run_config: Mapping[str, Any]) -> None:
    """Refuse every ``run_config`` key that cannot apply, naming it and what to do instead."""
    level = run_config.get("meas_level", 2)
    for key, value in run_config.items():
        if key in ONLY_VALUE:
            allowed, why = ONLY_VALUE[key]
            if value != allowed:
                raise InvalidInputError(f"run(..., {key}={value!r}) cannot apply: {why}")
        elif key in IGNORED_AT_LEVEL_2 and level == 2:
            continue
        elif key in REFUSED:
            raise InvalidInputError(f"run(..., {key}=...) cannot apply: {REFUSED[key]}")
        else:
            raise InvalidInputError(
                f"run() got an unknown argument {key!r}. Of the old Job Manager's run_config it takes shots, memory, "
                "seed_simulator, parameter_binds, meas_level=2, meas_return and init_qubits=True; see README "
                "'Coming from IBMQJobManager'.")


def bind_parameters(circuits: list[Any], parameter_binds: Any) -> list[Any]:
    """Every circuit bound with every bind, circuit-major, as ``assemble`` bound them; a bind
    must give every parameter of every circuit a number, and name no parameter no circuit has."""
    if parameter_binds is None:
        return circuits
    if isinstance(parameter_binds, Mapping) or not isinstance(parameter_binds, (list, tuple)) or not parameter_binds:
        raise InvalidInputError("parameter_binds must be a non-empty list of dicts, one per set of values, e.g. "
                                "parameter_binds=[{theta: 0.1}, {theta: 0.2}].")
    if not all(isinstance(c, QuantumCircuit) for c in circuits):
        raise InvalidInputError("parameter_binds binds circuits; pubs carry their own parameter values: pass "
                                "(circuit, values) pubs without parameter_binds.")
    binds = [_by_name(bind, n) for n, bind in enumerate(parameter_binds)]
    known = {p.name for c in circuits for p in c.parameters}
    for n, values in enumerate(binds):
        extra = sorted(set(values) - known)
        if extra:
            raise InvalidInputError(f"parameter_binds[{n}] names {extra}, which no circuit has (circuit parameters: "
                                    f"{sorted(known)}).")
    out = []
    for k, circuit in enumerate(circuits):
        for n, values in enumerate(binds):
            missing = sorted(p.name for p in circuit.parameters if p.name not in values)
            if missing:
                raise InvalidInputError(f"parameter_binds[{n}] gives no value for {missing} of circuit {k} "
                                        f"({circuit.name!r}): every bind must bind every parameter of every circuit.")
            out.append(circuit.assign_parameters({p: values[p.name] for p in circuit.parameters}))
    return out


def _by_name(bind: Any, n: int) -> dict[str, float]:
    """One bind as parameter name -> number (a ``ParameterVector`` key takes a list of numbers)."""
    if not isinstance(bind, Mapping):
        raise InvalidInputError(f"parameter_binds[{n}] must be a dict of parameter -> value, not "
                                f"{type(bind).__name__}.")
    out: dict[str, float] = {}
    for key, value in bind.items():
        if isinstance(key, ParameterVector):
            if not isinstance(value, (list, tuple)) or len(value) != len(key):
                raise InvalidInputError(f"parameter_binds[{n}][{key.name}] must be {len(key)} numbers, one per "
                                        "element of the vector.")
            pairs = list(zip((p.name for p in key.params), value, strict=True))
        elif isinstance(key, (Parameter, str)):
            pairs = [(key if isinstance(key, str) else key.name, value)]
        else:
            raise InvalidInputError(f"parameter_binds[{n}] has key {key!r}: use Parameter objects or their names.")
        for name, v in pairs:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise InvalidInputError(f"parameter_binds[{n}][{name}] is {v!r}: give a real number.")
            out[name] = float(v)
    return out
