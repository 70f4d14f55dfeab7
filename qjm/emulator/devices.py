"""The emulated devices: every fake backend of ``qiskit_ibm_runtime.fake_provider`` under an IBM name.

The catalogue reads the fake backends' JSON files directly and only builds a fake backend (and its
noisy Aer simulator) when a job actually runs on it, because loading all 68 devices up front takes
seconds and hundreds of megabytes.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import qiskit_ibm_runtime.fake_provider as fake_provider
from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2


def ibm_name(fake_name: str) -> str:
    """``fake_manila`` -> ``ibm_manila``: the name the emulator offers a fake device under."""
    return "ibm_" + fake_name.removeprefix("fake_")


@dataclass(frozen=True)
class Device:
    """One emulated device: where its JSON lives and how to build it."""

    name: str
    fake_class: type[FakeBackendV2]

    def _path(self, attr: str) -> str | None:
        filename = getattr(self.fake_class, attr, None)
        if not filename:
            return None
        path = os.path.join(self.fake_class.dirname, filename)
        return path if os.path.exists(path) else None

    def _load(self, attr: str) -> dict[str, Any] | None:
        path = self._path(attr)
        if path is None:
            return None
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        data["backend_name"] = self.name
        return data

    def configuration(self) -> dict[str, Any]:
        data = self._load("conf_filename")
        if data is None:  # every fake backend has one; keep the emulator alive if one does not
            raise LookupError(f"no configuration for {self.name}")
        return data

    def properties(self) -> dict[str, Any] | None:
        return self._load("props_filename")


class DeviceCatalog:
    """Name -> device, with per-device caches of the JSON documents and of the noisy simulator."""

    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        for _, cls in sorted(vars(fake_provider).items()):
            if inspect.isclass(cls) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2:
                fake_name = getattr(cls, "backend_name", None)
                if isinstance(fake_name, str) and getattr(cls, "conf_filename", None):
                    self.devices[ibm_name(fake_name)] = Device(ibm_name(fake_name), cls)
        self._lock = threading.Lock()
        self._json: dict[tuple[str, str], Any] = {}
        self._simulators: dict[str, Any] = {}

    def names(self) -> list[str]:
        return sorted(self.devices)

    def get(self, name: str) -> Device | None:
        return self.devices.get(name)

    def _cached(self, name: str, kind: str) -> Any:
        key = (name, kind)
        with self._lock:
            if key in self._json:
                return self._json[key]
        device = self.devices[name]
        value = device.configuration() if kind == "conf" else device.properties()
        with self._lock:
            self._json[key] = value
        return value

    def configuration(self, name: str) -> dict[str, Any]:
        return self._cached(name, "conf")

    def properties(self, name: str) -> dict[str, Any] | None:
        return self._cached(name, "props")

    def simulator(self, name: str) -> Any:
        """The device's noisy ``AerSimulator``, built once; one thread so the host keeps its cores."""
        with self._lock:
            sim = self._simulators.get(name)
            if sim is not None:
                return sim
        from qiskit_aer import AerSimulator

        fake = self.devices[name].fake_class()
        sim = AerSimulator.from_backend(fake)
        sim.set_options(max_parallel_threads=1, max_parallel_experiments=1, max_parallel_shots=1)
        with self._lock:
            self._simulators.setdefault(name, sim)
            return self._simulators[name]
