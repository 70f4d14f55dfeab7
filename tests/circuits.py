"""Circuits whose outcome is known exactly, so a mix-up of order shows in the counts."""

from __future__ import annotations

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Gate


def basis_state(k: int, n: int = 3, name: str | None = None) -> QuantumCircuit:
    """Prepares |k> on n qubits and measures all: the only outcome is k in binary."""
    qc = QuantumCircuit(n, name=name or f"basis-{k}")
    for q in range(n):
        if (k >> q) & 1:
            qc.x(q)
    qc.measure_all(add_bits=False) if qc.num_clbits else qc.measure_all()
    return qc


def expected(k: int, n: int = 3) -> str:
    return format(k % (1 << n), f"0{n}b")


def two_registers() -> QuantumCircuit:
    """X on qubits 0 and 2; register a holds qubit 0, register b qubits 1 and 2: counts '10 1'."""
    qc = QuantumCircuit(QuantumRegister(3, "q"), ClassicalRegister(1, "a"), ClassicalRegister(2, "b"), name="two-regs")
    qc.x(0)
    qc.x(2)
    qc.measure([0, 1, 2], [0, 1, 2])
    return qc


def untranslatable(name: str = "mystery") -> QuantumCircuit:
    """A measured circuit with an opaque gate no backend can run: transpilation fails in the worker."""
    qc = QuantumCircuit(1, 1, name=f"uses-{name}")
    qc.append(Gate(name, 1, []), [0])
    qc.measure(0, 0)
    return qc
