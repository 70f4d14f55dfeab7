"""What a job does once it runs: decode the posted ``params``, sample on Aer, encode the result.

Two programs are understood, each answered in the format its client decoder expects:

* ``executor`` (what both executor primitives, ``executor_sampler.Sampler`` and
  ``executor_estimator.Estimator``, post): ``params`` is an executor ``ParamsModel`` v2.0; the
  answer is a ``QuantumProgramResultModel`` v2.0 whose per-register data are boolean arrays (plus
  what each samplex item's sampling produced, e.g. measurement flips), with the program's
  ``passthrough_data`` and ``semantic_role`` handed back untouched: the client post-processes
  them into a ``PrimitiveResult`` itself. Plain circuit items run in one Aer call per job (each
  call reloads the device's noise model); a program with samplex items (the Estimator always,
  the Sampler with twirling) runs through qiskit-ibm-runtime's own local executor,
  ``run_quantum_program``, the same code as the client's local testing mode.
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


def _plain(value: Any) -> Any:
    """A passthrough subtree as JSON values (tensors as their shape), for the received record."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "to_numpy"):
        return {"tensor_shape": list(value.to_numpy().shape)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def describe_executor(model: Any, circuits: list[QuantumCircuit]) -> dict[str, Any]:
    """What the service got, as tests check it: options, item kinds, the post-processor's block
    of the passthrough data, and each circuit's gate counts (dynamical decoupling shows there)."""
    program = model.quantum_program
    passthrough = program.passthrough_data if isinstance(program.passthrough_data, dict) else {}
    return {
        "program_id": "executor",
        "semantic_role": program.semantic_role,
        "shots": program.shots,
        "meas_level": program.meas_level,
        "options": model.options.model_dump(mode="json"),
        "items": [{"type": item.item_type, "shape": list(item.shape)} for item in program.items],
        "post_processor": _plain(passthrough.get("post_processor")),
        "gate_counts": [{str(k): int(v) for k, v in c.count_ops().items()} for c in circuits],
    }


def run_samplex_program(sim: Any, model: Any) -> list[dict[str, np.ndarray]]:
    """Run a program with samplex items through the client's own local executor."""
    from qiskit_ibm_runtime.fake_provider.executor.run_quantum_program import run_quantum_program
    from qiskit_ibm_runtime.options_models.simulator import SimulatorOptions
    from qiskit_ibm_runtime.quantum_program.params_converters import QUANTUM_PROGRAM_PARAMS_CONVERTERS
    from samplomatic.quantum_program import SamplexItem

    program, _ = QUANTUM_PROGRAM_PARAMS_CONVERTERS["v2.0"].decoder(model)
    for item in program.items:
        if isinstance(item, SamplexItem):
            item.samplex.finalize()  # a decoded samplex must be finalized before it samples
    result = run_quantum_program(sim, program, SimulatorOptions())
    return [dict(item) for item in result]


def run_executor(sim: Any, params: dict[str, Any], received: dict[str, Any] | None = None) -> str:
    """Run an executor ``ParamsModel`` and answer with a ``QuantumProgramResultModel`` as JSON;
    ``received`` is filled with ``describe_executor``'s record before anything runs."""
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
    circuits: list[QuantumCircuit] = program.circuits.to_python(use_cached=True)
    if received is not None:
        received.update(describe_executor(model, circuits))
    start = datetime.datetime.now(datetime.timezone.utc)
    if all(item.item_type == "circuit" for item in program.items):
        work: list[Sweep] = [
            (circuit, item.circuit_arguments.to_numpy() if circuit.num_parameters else None)
            for circuit, item in zip(circuits, program.items, strict=True)
        ]
        outputs = sample_circuits(sim, work, program.shots)
    else:
        outputs = run_samplex_program(sim, model)
    items = [
        QuantumProgramResultItemModel(
            results={name: CompressedTensorModel.from_numpy(np.asarray(arr)) for name, arr in data.items()},
            metadata=ItemMetadataModel(),
        )
        for data in outputs
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


def run_program(sim: Any, program_id: str, params: dict[str, Any], received: dict[str, Any] | None = None) -> str:
    """Dispatch on ``program_id``; the returned text is what ``GET /jobs/{id}/results`` answers.
    ``received`` (if given) is filled with a record of what the job asked for."""
    if program_id == "executor":
        return run_executor(sim, params, received)
    if program_id == "sampler":
        decoded = decode_sampler_params(params)
        if received is not None:
            received.update({"program_id": "sampler", "pubs": len(decoded.get("pubs", [])),
                             "options": _plain(decoded.get("options") or {})})
        return run_sampler(sim, decoded)
    raise ProgramError(f"program {program_id!r} is not emulated (supported: {', '.join(SUPPORTED_PROGRAMS)})")
