"""Results as plain JSON documents (``qjm results --out``): counts per experiment for sets of
circuits; for sets of pubs, per pub its shape and, per parameter index, the counts of each
register (Sampler) or the expectation value and standard error (Estimator)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit.primitives import BitArray, PubResult

from .results import ManagedResults


def _pub_entry(pub: PubResult) -> dict[str, Any]:
    data = pub.data
    shape = tuple(data.shape)
    entry: dict[str, Any] = {"shape": list(shape)}
    if "evs" in data:
        evs, stds = np.broadcast_to(data.evs, shape), np.broadcast_to(data.stds, shape)
        entry["values"] = [{"index": list(ix), "ev": float(evs[ix]), "std": float(stds[ix])} for ix in np.ndindex(shape)]
        return entry
    registers = {name: data[name] for name in data if isinstance(data[name], BitArray)}
    entry["shots"] = int(next(iter(registers.values())).num_shots) if registers else 0
    entry["values"] = [{"index": list(ix), "counts": {name: bits.get_counts(ix) for name, bits in registers.items()}}
                       for ix in np.ndindex(shape)]
    return entry


def experiments(results: ManagedResults, names: list[str]) -> list[dict[str, Any]]:
    """One entry per experiment (pub), in input order; failed ones carry their error."""
    errors = results.errors
    out: list[dict[str, Any]] = []
    pubs = results.primitive_result() if results.is_pub_set else None
    for k in range(len(results)):
        entry: dict[str, Any] = {"index": k, "name": names[k] if k < len(names) else None}
        if k in errors:
            entry["error"] = errors[k]
        elif pubs is not None:
            entry.update(_pub_entry(pubs[k]))
        else:
            entry["counts"] = results.get_counts(k)
        out.append(entry)
    return out
