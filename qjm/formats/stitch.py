"""Pub results put back together: slices of a split pub joined along their leading axis, a
missing slice named when it is read, and counts-API records seen as Sampler pub results."""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit.primitives import BitArray, DataBin, PubResult, SamplerPubResult

from ..errors import JobSetFailedError


class MissingPubResult(PubResult):
    """Stands where a pub (or a slice of it) has no data: reading it raises a qjm error that
    names the pub, the rows and why, instead of handing back something that is not there."""

    __slots__ = ("_why",)

    def __init__(self, why: str) -> None:
        super().__init__(DataBin(), {"qjm_missing": why})
        self._why = why

    @property
    def data(self) -> DataBin:
        raise JobSetFailedError(self._why)

    def __repr__(self) -> str:
        return f"MissingPubResult({self._why!r})"


def _join_field(values: list[Any], part_shapes: list[tuple[int, ...]]) -> Any:
    first = values[0]
    if isinstance(first, BitArray):
        return BitArray.concatenate(values, axis=0)
    arrays = [np.asarray(v) for v in values]
    if all(a.ndim >= len(s) and a.shape[:len(s)] == s and s for a, s in zip(arrays, part_shapes, strict=True)):
        return np.concatenate(arrays, axis=0)
    return first  # a value not laid out along the pub's shape (the same for every slice)


def join(parts: list[PubResult]) -> PubResult:
    """One pub result from the results of its row slices, in row order."""
    if len(parts) == 1:
        return parts[0]
    shapes = [tuple(p.data.shape) for p in parts]
    fields = {name: _join_field([p.data[name] for p in parts], shapes) for name in parts[0].data}
    shape = (sum(s[0] for s in shapes), *shapes[0][1:])
    metadata = dict(parts[0].metadata)
    metadata["qjm_slices"] = len(parts)
    return type(parts[0])(DataBin(**fields, shape=shape), metadata=metadata)


def pub_from_record(record: dict[str, Any]) -> SamplerPubResult:
    """A counts-API experiment record as the Sampler would have given it: one BitArray per
    classical register (from the shot memory when kept, else from the counts)."""
    header = record.get("header", {})
    sizes = [(str(n), int(s)) for n, s in header.get("creg_sizes") or []]
    width = int(header.get("memory_slots") or sum(s for _, s in sizes))
    data = record.get("data", {})
    if data.get("memory"):
        joined = BitArray.from_samples([int(h, 16) for h in data["memory"]], num_bits=width)
    else:
        joined = BitArray.from_counts({int(k, 16): int(v) for k, v in data.get("counts", {}).items()}, num_bits=width)
    registers: dict[str, BitArray] = {}
    offset = 0
    for reg, size in sizes:  # the first register holds the least significant bits
        registers[reg] = joined.slice_bits(list(range(offset, offset + size)))
        offset += size
    return SamplerPubResult(DataBin(**registers, shape=()), metadata={"shots": int(record.get("shots", 0))})


def record_from_pub(pub: PubResult, name: str) -> dict[str, Any]:
    """A Sampler pub result of one parameter set as a counts-API experiment record."""
    data = pub.data
    registers = [(reg, data[reg]) for reg in data]
    header = {"name": name, "creg_sizes": [[reg, ba.num_bits] for reg, ba in registers],
              "memory_slots": sum(ba.num_bits for _, ba in registers)}
    joined = pub.join_data()
    counts = {hex(int(k, 2)): int(v) for k, v in joined.get_counts().items()}
    memory = [hex(int(b, 2)) for b in joined.get_bitstrings()]
    return {"shots": int(joined.num_shots), "success": True, "status": "DONE",
            "data": {"counts": counts, "memory": memory}, "header": header}
