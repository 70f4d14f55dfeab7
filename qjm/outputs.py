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

from . import codec
from .executors.base import JobWork, Output


def _plain(value: Any) -> Any:
    """Metadata the encoder cannot write (the executor's ``Metadata`` dataclass, pydantic
    models) as plain JSON values; everything else as it is."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def encode_result(result: PrimitiveResult) -> bytes:
    from qiskit_ibm_runtime import RuntimeEncoder

    plain = PrimitiveResult(
        [type(pub)(pub.data, metadata=_plain(dict(pub.metadata))) for pub in result],
        metadata=_plain(dict(result.metadata)),
    )
    return json.dumps(plain, cls=RuntimeEncoder, separators=(",", ":")).encode()


def decode_result(data: bytes | str) -> PrimitiveResult:
    from qiskit_ibm_runtime import RuntimeDecoder

    out = json.loads(data, cls=RuntimeDecoder)
    if not isinstance(out, PrimitiveResult):
        raise ValueError(f"stored job result is a {type(out).__name__}, not a PrimitiveResult")
    return out


def encode(output: Output, work: JobWork) -> bytes:
    """The stored form of a job's output, in the format of its set."""
    if isinstance(output, PrimitiveResult):
        if work.options.pubs:
            return encode_result(output)
        return codec.dumps(codec.records_from_primitive_result(work.circuits, output, work.options.memory))
    if work.options.pubs:
        raise TypeError("a set given as pubs stores PrimitiveResults, not experiment records")
    return codec.dumps(output)
