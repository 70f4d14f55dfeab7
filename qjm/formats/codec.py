"""Wire formats: circuits as QPY bytes, results as JSON experiment records. Never pickle.

An *experiment record* is the dict form of a ``qiskit.result.ExperimentResult`` (counts and
memory as hex keys, a header with ``name``, ``creg_sizes`` and ``memory_slots``), so that the
combined result is rebuilt with Qiskit's own ``Result.from_dict``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

from qiskit import QuantumCircuit, qpy


def circuits_to_qpy(circuits: Iterable[QuantumCircuit]) -> bytes:
    buf = io.BytesIO()
    qpy.dump(list(circuits), buf)
    return buf.getvalue()


def circuits_from_qpy(data: bytes) -> list[QuantumCircuit]:
    return list(qpy.load(io.BytesIO(data)))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str | None) -> Any:
    return None if data is None else json.loads(data)


def header_for(circuit: QuantumCircuit) -> dict[str, Any]:
    """The result header Qiskit needs to format counts the way the circuit's registers read."""
    return {
        "name": circuit.name,
        "creg_sizes": [[reg.name, reg.size] for reg in circuit.cregs],
        "memory_slots": circuit.num_clbits,
    }


def record(circuit: QuantumCircuit, shots: int, counts: dict[str, int], memory: list[str] | None = None) -> dict[str, Any]:
    """An experiment record from hex-keyed counts (and memory)."""
    data: dict[str, Any] = {"counts": dict(counts)}
    if memory is not None:
        data["memory"] = list(memory)
    return {"shots": shots, "success": True, "status": "DONE", "data": data, "header": header_for(circuit)}


def failed_record(name: str, message: str) -> dict[str, Any]:
    """A placeholder that keeps global indices aligned where an experiment has no result."""
    return {"shots": 0, "success": False, "status": message, "data": {}, "header": {"name": name}}


def records_from_qiskit_result(circuits: list[QuantumCircuit], result: Any, memory: bool) -> list[dict[str, Any]]:
    """Records from a ``qiskit.result.Result`` (what qiskit-aer returns)."""
    out = []
    for circuit, exp in zip(circuits, result.results, strict=False):
        counts = exp.data.counts
        mem = list(exp.data.memory) if memory and hasattr(exp.data, "memory") else None
        out.append(record(circuit, int(exp.shots), counts, mem))
    return out


def records_from_primitive_result(circuits: list[QuantumCircuit], result: Any, memory: bool) -> list[dict[str, Any]]:
    """Records from a Sampler ``PrimitiveResult``: one pub per circuit, registers joined.

    ``join_data()`` puts the first classical register in the least significant bits, which is
    the same order as a legacy memory slot, so a joined bitstring is the hex key as an int.
    """
    out = []
    for circuit, pub in zip(circuits, result, strict=False):
        joined = pub.join_data()
        shots = int(joined.num_shots)
        bits = joined.get_bitstrings() if memory else None
        counts = {hex(int(k, 2)): int(v) for k, v in joined.get_counts().items()}
        mem = [hex(int(b, 2)) for b in bits] if bits is not None else None
        out.append(record(circuit, shots, counts, mem))
    return out
