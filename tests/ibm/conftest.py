"""Fixtures for the IBM executor tests: in-process emulators on free loopback ports.

The real qiskit-ibm-runtime client talks HTTP to these emulators; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qjm.emulator import Emulator, Faults
from qjm.emulator.devices import DeviceCatalog


@pytest.fixture(scope="session")
def device_catalog() -> DeviceCatalog:
    """One catalogue for all emulators, so each device's noisy simulator is built once."""
    return DeviceCatalog()


@pytest.fixture(scope="module")
def emulator(device_catalog: DeviceCatalog) -> Iterator[Emulator]:
    """A plain emulator shared by a test module: fast queue, no faults."""
    emu = Emulator("127.0.0.1", 0, Faults(job_seconds=0.3), device_catalog).start()
    yield emu
    emu.stop()


@pytest.fixture
def make_emulator(device_catalog: DeviceCatalog) -> Iterator[Callable[..., Emulator]]:
    """Start a dedicated emulator with ``Faults`` knobs as keyword arguments; stopped after the test."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("job_seconds", 0.3)
        emu = Emulator("127.0.0.1", 0, Faults(**kwargs), device_catalog).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def use_emulator(monkeypatch: pytest.MonkeyPatch) -> Callable[[Emulator], None]:
    """Point the client at an emulator the way a user would: QISKIT_IBM_URL alone.

    IAM_URL and QISKIT_FUNCTIONS_EXPERIMENTAL are removed (the executor must set them up) but
    registered with monkeypatch, so that what the executor sets is undone after the test.
    """

    def use(emu: Emulator) -> None:
        names = ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "IAM_URL", "QISKIT_FUNCTIONS_EXPERIMENTAL")
        for name in names:
            monkeypatch.setenv(name, "")  # remembers the original value for teardown
            monkeypatch.delenv(name)
        monkeypatch.setenv("QISKIT_IBM_URL", emu.url)

    return use
