"""Reading circuits from files, as ``qjm run`` does: QPY or OpenQASM 2/3, told apart by content."""

from __future__ import annotations

import io
import re
from pathlib import Path

from qiskit import QuantumCircuit

from ..errors import CircuitFileError

_AUTO_NAME = re.compile(r"^circuit-\d+$")


def load_circuits(path: Path) -> list[QuantumCircuit]:
    """Circuits from a QPY file (by its magic bytes) or OpenQASM 2/3 text (by its version line).

    Circuits without a name of their own are named after the file, so results can be looked up by it.
    """
    from qiskit import qasm2, qasm3, qpy

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CircuitFileError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    stem = path.stem
    if data.startswith(b"QISKIT"):
        try:
            circuits = list(qpy.load(io.BytesIO(data)))
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file
            raise CircuitFileError(f"{path} is not a readable QPY file: {exc}") from None
        for k, qc in enumerate(circuits):
            if not qc.name or _AUTO_NAME.match(qc.name):
                qc.name = stem if len(circuits) == 1 else f"{stem}-{k}"
        return circuits
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CircuitFileError(f"{path} is neither QPY nor OpenQASM text.") from None
    version = re.search(r"^\s*OPENQASM\s+(\d+)", re.sub(r"//[^\n]*", "", text), re.MULTILINE)
    if version is None:
        raise CircuitFileError(f"{path} is neither QPY nor OpenQASM (no 'OPENQASM 2.0;' or 'OPENQASM 3.0;' line).")
    try:
        if version.group(1) == "2":
            qc = qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        else:
            qc = qasm3.loads(text)
    except Exception as exc:  # noqa: BLE001 - parsers raise various types; all mean a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CircuitFileError(f"{path} is not valid OpenQASM {version.group(1)}: {first}") from None
    qc.name = stem
    return [qc]
