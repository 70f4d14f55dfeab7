"""What a job costs in quantum seconds: one deterministic formula, computed from the job as posted.

    charge = JOB_OVERHEAD_SECONDS + sum over the job's circuits c of  executions(c) * (T(c) + rep_delay)

* ``T(c)``: one shot of circuit ``c`` as posted (an ISA circuit on physical qubits), the length of
  its longest path: instructions in circuit order, each starting when all of its qubits and clbits
  are free and lasting its duration on the device, which is the device's own calibration data, as
  the device's ``Target`` has it: a gate's ``gate_length`` in ``props_*.json`` for those qubits, a
  measurement's ``readout_length`` of its qubit, a delay its own duration (``dt`` from the
  configuration), a barrier nothing; an instruction the properties do not time lasts 0. A control
  flow operation (``box``, ``if_else``, ...) lasts its longest block. The longest path is what a
  scheduled circuit's ``QuantumCircuit.estimate_duration(target)`` reports.
* ``rep_delay``: the configuration's ``default_rep_delay`` (given in microseconds) between shots.
* ``executions(c)``: shots times every other axis the program gives the circuit: for the executor
  program (both executor primitives) ``shots * prod(shape)``, ``shape`` the item's posted shape
  broadcast with the extrinsic shape of its arguments (as samplomatic's items define it), so
  parameter sweeps, replications and twirling randomizations all count; for the legacy ``sampler`` program,
  ``shots * prod(parameter_values.shape[:-1])`` per pub (``default_shots``, else 1024, when a pub
  names none).
* ``JOB_OVERHEAD_SECONDS``: a fixed cost per job (preparing the QPU), 2 s.

Nothing here reads qjm's own estimate; a program the emulator cannot read costs the overhead only
(it fails when it runs). What a job is finally charged, given how it ended, is ``usage``'s rule.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from .devices import DeviceCatalog

#: Fixed cost of every job that runs, in seconds (preparing the QPU for it).
JOB_OVERHEAD_SECONDS = 2.0
#: Shots of a legacy sampler pub that names none, with no ``default_shots`` option (as ``programs``).
DEFAULT_SHOTS = 1024

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12}


@dataclass
class DeviceTimes:
    """A device's durations in seconds, read from its properties and configuration JSON."""

    gates: dict[tuple[str, tuple[int, ...]], float] = field(default_factory=dict)
    readout: dict[int, float] = field(default_factory=dict)
    dt: float = 0.0
    rep_delay: float = 0.0

    @classmethod
    def from_json(cls, configuration: dict[str, Any], properties: dict[str, Any] | None) -> DeviceTimes:
        times = cls(dt=float(configuration.get("dt") or 0.0) * 1e-9,
                    rep_delay=float(configuration.get("default_rep_delay") or 0.0) * 1e-6)
        for gate in (properties or {}).get("gates", []):
            for p in gate.get("parameters", []):
                if p.get("name") == "gate_length":
                    times.gates[(gate["gate"], tuple(gate["qubits"]))] = float(p["value"]) * _UNITS.get(p.get("unit"), 1e-9)
        for q, entries in enumerate((properties or {}).get("qubits", [])):
            for p in entries:
                if p.get("name") == "readout_length":
                    times.readout[q] = float(p["value"]) * _UNITS.get(p.get("unit"), 1e-9)
        return times

    def seconds(self, circuit: QuantumCircuit, physical: list[int] | None = None) -> float:
        """``T(c)``: the longest path through ``circuit``; ``physical`` maps its qubits (by
        index) to the device's (a block of a control flow operation has its own qubits)."""
        where = physical if physical is not None else list(range(circuit.num_qubits))
        free: dict[Any, float] = {}
        for inst in circuit.data:
            op = inst.operation
            qubits = [where[circuit.find_bit(q).index] for q in inst.qubits]
            bits = list(inst.qubits) + list(inst.clbits)
            start = max((free.get(b, 0.0) for b in bits), default=0.0)
            end = start + self._instruction(op, qubits)
            for b in bits:
                free[b] = end
        return max(free.values(), default=0.0)

    def _instruction(self, op: Any, qubits: list[int]) -> float:
        if getattr(op, "blocks", None):
            return max((self.seconds(block, qubits) for block in op.blocks), default=0.0)
        if op.name == "barrier":
            return 0.0
        if op.name == "delay":
            unit = getattr(op, "unit", "dt")
            return float(op.duration) * (self.dt if unit == "dt" else _UNITS.get(unit, 1.0))
        if op.name == "measure":
            return self.readout.get(qubits[0], 0.0)
        return self.gates.get((op.name, tuple(qubits)), 0.0)


def program_work(program_id: str, params: dict[str, Any]) -> list[tuple[QuantumCircuit, int]]:
    """Each circuit of a posted program with its executions (shots times its other axes)."""
    if program_id == "executor":
        from ibm_quantum_schemas.executor.version_2_0 import ParamsModel
        from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS

        model = ParamsModel.model_validate(params)
        program, _ = QUANTUM_PROGRAM_PARAMS_CONVERTERS["v2.0"].decoder(model)
        # An item's extent: its posted shape broadcast with what its arguments imply (sweeps).
        return [(item.circuit, program.shots * math.prod(np.broadcast_shapes(tuple(posted.shape), item.shape)))
                for item, posted in zip(program.items, model.quantum_program.items, strict=True)]
    if program_id == "sampler":
        from .programs import decode_sampler_params

        decoded = decode_sampler_params(params)
        default = int((decoded.get("options") or {}).get("default_shots") or DEFAULT_SHOTS)
        work = []
        for pub in decoded.get("pubs", []):
            pub = (pub,) if isinstance(pub, QuantumCircuit) else tuple(pub)
            circuit = pub[0]
            shots = int(pub[2]) if len(pub) > 2 and pub[2] is not None else default
            values = pub[1] if len(pub) > 1 and circuit.num_parameters else None
            sweep = math.prod(np.asarray(values).shape[:-1]) if values is not None else 1
            work.append((circuit, shots * sweep))
        return work
    raise ValueError(f"no charge rule for program {program_id!r}")


class Tariff:
    """``charge`` for any device of a catalogue, with each device's times read once."""

    def __init__(self, catalog: DeviceCatalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._times: dict[str, DeviceTimes] = {}

    def times(self, backend: str) -> DeviceTimes:
        with self._lock:
            cached = self._times.get(backend)
        if cached is None:
            cached = DeviceTimes.from_json(self.catalog.configuration(backend), self.catalog.properties(backend))
            with self._lock:
                self._times[backend] = cached
        return cached

    def charge(self, backend: str, program_id: str, params: dict[str, Any]) -> float:
        """The module's formula for one posted job on ``backend``."""
        times = self.times(backend)
        try:
            work = program_work(program_id, params)
        except Exception:  # an unreadable program fails when it runs; it costs the overhead only
            return JOB_OVERHEAD_SECONDS
        return JOB_OVERHEAD_SECONDS + sum(n * (times.seconds(c) + times.rep_delay) for c, n in work)
