"""A job's output as stored in Redis, one value per job: experiment records for sets given as
plain circuits (the counts API), the primitive's ``PrimitiveResult`` for sets given as pubs.

PrimitiveResults travel as qiskit-ibm-runtime's ``RuntimeEncoder`` JSON (arrays via
``np.save`` without pickle), which its ``RuntimeDecoder`` reads back into the same types.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from qiskit.primitives import PrimitiveResult

from ..executors.base import JobWork, Output
from . import codec

#: Marks a metadata dataclass of the client's results in the stored JSON, with its class name.
DATACLASS_TAG = "__qjm_dataclass__"


def _metadata_classes() -> dict[str, type]:
    """The client's result-metadata dataclasses (``result.metadata["executor"]`` is a ``Metadata``
    of ``ChunkSpan``s), rebuilt by name on reading: a closed list, so stored text never names a
    class to import."""
    from qiskit_ibm_runtime.results.quantum_program import (
        ChunkPart,
        ChunkSpan,
        ItemMetadata,
        Metadata,
        SchedulerTiming,
        StretchValues,
    )

    return {cls.__name__: cls for cls in (ChunkPart, ChunkSpan, ItemMetadata, Metadata, SchedulerTiming, StretchValues)}


def _plain(value: Any) -> Any:
    """Metadata the encoder cannot write as JSON values: the client's metadata dataclasses tagged
    with their name (``_rebuilt`` reverses it), other dataclasses and pydantic models as plain
    dicts; everything else (numbers, arrays, datetimes) is left to ``RuntimeEncoder``."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        name = type(value).__name__
        if _metadata_classes().get(name) is type(value):
            return {DATACLASS_TAG: name, "fields": fields}
        return fields
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def _rebuilt(value: Any) -> Any:
    """``_plain``'s tagged dataclasses back as the client's own types."""
    if isinstance(value, dict):
        name = value.get(DATACLASS_TAG)
        if isinstance(name, str) and name in _metadata_classes() and set(value) == {DATACLASS_TAG, "fields"}:
            return _metadata_classes()[name](**_rebuilt(value["fields"]))
        return {k: _rebuilt(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuilt(v) for v in value]
    return value


def encode_result(result: PrimitiveResult) -> bytes:
    from qiskit_ibm_runtime import RuntimeEncoder

    plain = PrimitiveResult(
        [type(pub)(pub.data, metadata=_plain(dict(pub.metadata))) for pub in result],
        metadata=_plain(dict(result.metadata)),
    )
    return json.dumps(plain, cls=RuntimeEncoder, separators=(",", ":")).encode()


def decode_result(data: bytes | str) -> PrimitiveResult:
    """A stored ``PrimitiveResult`` with the types the client gave: ``SamplerPubResult``/
    ``EstimatorPubResult``, ``BitArray``s and arrays in ``DataBin``s, metadata dataclasses."""
    from qiskit_ibm_runtime import RuntimeDecoder

    out = json.loads(data, cls=RuntimeDecoder)
    if not isinstance(out, PrimitiveResult):
        raise ValueError(f"stored job result is a {type(out).__name__}, not a PrimitiveResult")
    return PrimitiveResult(
        [type(pub)(pub.data, metadata=_rebuilt(dict(pub.metadata))) for pub in out],
        metadata=_rebuilt(dict(out.metadata)),
    )


def encode(output: Output, work: JobWork) -> bytes:
    """The stored form of a job's output, in the format of its set."""
    if isinstance(output, PrimitiveResult):
        if work.options.pubs:
            return encode_result(output)
        return codec.dumps(codec.records_from_primitive_result(work.circuits, output, work.options.memory))
    if work.options.pubs:
        raise TypeError("a set given as pubs stores PrimitiveResults, not experiment records")
    return codec.dumps(output)
