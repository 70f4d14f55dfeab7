"""What a job does once it runs: decode the posted ``params``, sample on Aer, encode the result.

Two programs are understood, each answered in the format its client decoder expects:

* ``executor`` (``qiskit_ibm_runtime.executor_sampler.Sampler``): ``params`` is an executor
  ``ParamsModel`` v2.0; the answer is a ``QuantumProgramResultModel`` v2.0 whose per-register data
  are boolean arrays, post-processed into a ``PrimitiveResult`` by the client itself.
* ``sampler`` (legacy ``SamplerV2``): ``params`` holds ``pubs``; the answer is the
  ``PrimitiveResult`` encoded with ``RuntimeEncoder``.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
from qiskit import QuantumCircuit

SUPPORTED_PROGRAMS = ("executor", "sampler")


class ProgramError(Exception):
    """The job cannot run (bad params, unsupported program); becomes the job's failure reason."""


Sweep = tuple[QuantumCircuit, "np.ndarray | None"]


def sample_circuits(sim: Any, work: list[Sweep], shots: int) -> list[dict[str, np.ndarray]]:
    """Per item and classical register, a bool array of shape ``(*sweep_shape, shots, size)``.

    Column ``j`` is bit ``j`` of the register (little-endian), the layout both samplers use.
    Every bound circuit of the job goes to Aer in one call: each call pays for loading the
    device's noise model again, which would otherwise dominate (and hold the emulator's GIL).
    """
    bound: list[QuantumCircuit] = []
    shapes: list[tuple[int, ...]] = []
    for circuit, values in work:
        if values is not None and circuit.num_parameters:
            values = np.asarray(values, dtype=float)
            shapes.append(values.shape[:-1])
            flat = values.reshape(-1, values.shape[-1])
            bound.extend(circuit.assign_parameters(dict(zip(circuit.parameters, row, strict=False))) for row in flat)
        else:
            shapes.append(())
            bound.append(circuit)
    result = sim.run(bound, shots=shots, memory=True).result()
    if not result.success:
        raise ProgramError(f"simulation failed: {result.status}")
    out: list[dict[str, np.ndarray]] = []
    offset = 0
    for (circuit, _), shape in zip(work, shapes, strict=False):
        n = int(np.prod(shape)) if shape else 1
        # Each shot's memory is a hex string over all clbits; clbit k is bit k of that integer.
        ints = np.array([[int(word, 16) for word in result.data(offset + i)["memory"]] for i in range(n)],
                        dtype=object)
        offset += n
        all_bits = np.zeros((n, shots, circuit.num_clbits), dtype=bool)
        for k in range(circuit.num_clbits):
            all_bits[:, :, k] = (ints >> k) & 1 == 1
        data: dict[str, np.ndarray] = {}
        for creg in circuit.cregs:
            cols = [circuit.find_bit(bit).index for bit in creg]
            data[creg.name] = all_bits[:, :, cols].reshape(*shape, shots, creg.size)
        out.append(data)
    return out


def run_executor(sim: Any, params: dict[str, Any]) -> str:
    """Run an executor ``ParamsModel`` and answer with a ``QuantumProgramResultModel`` as JSON."""
    from ibm_quantum_schemas.common import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import ParamsModel
    from ibm_quantum_schemas.executor.version_2_0.models import (
        ItemMetadataModel,
        MetadataModel,
        QuantumProgramResultItemModel,
        QuantumProgramResultModel,
    )

    version = params.get("schema_version")
    if version != "v2.0":
        raise ProgramError(f"the emulator serves executor schema v2.0 only, not {version!r}")
    model = ParamsModel.model_validate(params)
    program = model.quantum_program
    if program.meas_level != "classified":
        raise ProgramError(f"meas_level {program.meas_level!r} is not emulated (only 'classified')")
    circuits: list[QuantumCircuit] = program.circuits.to_python()
    start = datetime.datetime.now(datetime.timezone.utc)
    work: list[Sweep] = []
    for circuit, item in zip(circuits, program.items, strict=False):
        if item.item_type != "circuit":
            raise ProgramError("samplex items (twirling) are not emulated; disable twirling")
        work.append((circuit, item.circuit_arguments.to_numpy() if circuit.num_parameters else None))
    items = [
        QuantumProgramResultItemModel(
            results={name: CompressedTensorModel.from_numpy(arr) for name, arr in data.items()},
            metadata=ItemMetadataModel(),
        )
        for data in sample_circuits(sim, work, program.shots)
    ]
    stop = datetime.datetime.now(datetime.timezone.utc)
    result = QuantumProgramResultModel(
        data=items,
        metadata=MetadataModel(chunk_timing=[{"start": start, "stop": stop, "parts": []}]),
        passthrough_data=program.passthrough_data,
        semantic_role=program.semantic_role,
    )
    return result.model_dump_json()


def run_sampler(sim: Any, params: dict[str, Any], default_shots: int = 1024) -> str:
    """Run legacy ``SamplerV2`` pubs and answer with the ``RuntimeEncoder`` JSON of the result."""
    from qiskit.primitives import BitArray, DataBin, PrimitiveResult, SamplerPubResult
    from qiskit_ibm_runtime import RuntimeEncoder

    options = params.get("options") or {}
    shots_default = options.get("default_shots") or default_shots
    pubs: list[tuple[QuantumCircuit, Any, int]] = []
    for pub in params.get("pubs", []):
        if isinstance(pub, QuantumCircuit):
            pub = (pub,)
        circuit = pub[0]
        values = pub[1] if len(pub) > 1 and circuit.num_parameters else None
        shots = int(pub[2]) if len(pub) > 2 and pub[2] is not None else int(shots_default)
        pubs.append((circuit, values, shots))
    data: dict[int, dict[str, np.ndarray]] = {}
    for shots in sorted({p[2] for p in pubs}):  # one Aer call per distinct shot count
        indices = [k for k, p in enumerate(pubs) if p[2] == shots]
        for k, sampled in zip(indices, sample_circuits(sim, [pubs[k][:2] for k in indices], shots), strict=False):
            data[k] = sampled
    pub_results = []
    for k, (circuit, values, shots) in enumerate(pubs):
        shape = () if values is None else np.asarray(values).shape[:-1]
        arrays = {name: BitArray.from_bool_array(arr, order="little") for name, arr in data[k].items()}
        pub_results.append(
            SamplerPubResult(DataBin(**arrays, shape=shape), metadata={"shots": shots, "circuit_metadata": circuit.metadata})
        )
    result = PrimitiveResult(pub_results, metadata={"version": 2})
    return json.dumps(result, cls=RuntimeEncoder)


def decode_sampler_params(raw: Any) -> dict[str, Any]:
    """Legacy sampler params arrive as ``RuntimeEncoder`` JSON; decode them (QPY, numpy; no pickle)."""
    from qiskit_ibm_runtime import RuntimeDecoder

    return json.loads(json.dumps(raw), cls=RuntimeDecoder)


def run_program(sim: Any, program_id: str, params: dict[str, Any]) -> str:
    """Dispatch on ``program_id``; the returned text is what ``GET /jobs/{id}/results`` answers."""
    if program_id == "executor":
        return run_executor(sim, params)
    if program_id == "sampler":
        return run_sampler(sim, decode_sampler_params(params))
    raise ProgramError(f"program {program_id!r} is not emulated (supported: {', '.join(SUPPORTED_PROGRAMS)})")
