"""``JobManager``: splits circuits into jobs, hands them to the workers, finds job sets again."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from qiskit import QuantumCircuit
from qiskit.providers import BackendV2

from . import codec, hooks, tasks, validation
from .config import Settings
from .config import settings as load_settings
from .dispatch import enqueue_job_set
from .errors import InvalidInputError, QJMError, UnknownBackendError
from .executors import RunOptions, for_backend, is_local
from .job_set import ManagedJobSet
from .store import JobSetRecord, Store, new_job_set_id


def backend_name(backend: Any) -> str:
    """A backend is given by name or as an object (fake backends and simulators by their name)."""
    if isinstance(backend, str):
        if not backend.strip():
            raise UnknownBackendError("backend is empty: give a name such as 'fake_manila' or 'aer_simulator'.")
        return backend.strip()
    name = getattr(backend, "name", None)
    name = name() if callable(name) else name
    if isinstance(name, str) and name:
        return name
    raise UnknownBackendError(f"Cannot tell the backend's name from {backend!r}: pass its name as a string.")


def _resolve_backend(name: str) -> BackendV2:
    """The backend's target, or an error that says which names work and how to reach IBM."""
    try:
        return for_backend(name).backend()
    except UnknownBackendError:
        raise
    except QJMError as exc:
        raise UnknownBackendError(
            f"Backend {name!r} is not local (fake_* devices such as fake_manila, or aer_simulator), and IBM "
            f"Quantum could not be asked about it: {exc}. Set QISKIT_IBM_TOKEN and QISKIT_IBM_INSTANCE (or "
            "QISKIT_IBM_URL for a qjm emulator), or save an account with qiskit-ibm-runtime.") from exc


class JobManager:
    """Runs sets of circuits on a backend through qjm's workers; state lives in Redis.

    ``JobManager()`` reads ``QJM_REDIS_URL``; pass ``redis_url`` to point elsewhere.
    """

    def __init__(self, redis_url: str | None = None) -> None:
        self._cfg: Settings = load_settings()
        if redis_url:
            self._cfg = Settings(redis_url=redis_url, broker_url=self._cfg.broker_url,
                                 result_backend_url=self._cfg.result_backend_url)
        self._store = Store(cfg=self._cfg)

    @property
    def store(self) -> Store:
        return self._store

    def run(
        self,
        experiments: QuantumCircuit | Iterable[QuantumCircuit],
        backend: str | BackendV2,
        name: str | None = None,
        max_experiments_per_job: int | None = None,
        job_tags: list[str] | None = None,
        shots: int = 1024,
        optimization_level: int = 2,
        seed_simulator: int | None = None,
        memory: bool = False,
    ) -> ManagedJobSet:
        """Validate, split, store and enqueue; returns at once with the set's live view.

        Every check runs before anything is written, so a bad call leaves no trace.
        """
        circuits = validation.as_circuit_list(experiments)
        validation.check_options(max_experiments_per_job, shots, optimization_level, self._cfg.max_executions_per_job)
        tags = validation.check_tags(job_tags)
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"name must be a string, got {type(name).__name__}.")
        bname = backend_name(backend)
        target = _resolve_backend(bname)
        validation.check_circuits(circuits, target, bname)
        self._store.ping()

        size = validation.experiments_per_job(max_experiments_per_job, getattr(target, "max_circuits", None), shots,
                                              self._cfg.default_max_experiments, self._cfg.max_executions_per_job)
        bounds = validation.split(len(circuits), size)
        options = RunOptions(shots=shots, memory=bool(memory), seed_simulator=seed_simulator,
                             optimization_level=optimization_level)
        rec = JobSetRecord(id=new_job_set_id(), name=name, backend=bname, tags=tags, created=time.time(),
                           n_experiments=len(circuits), job_bounds=bounds, options=options.to_json())
        blobs = [codec.circuits_to_qpy(circuits[a:b]) for a, b in bounds]
        self._store.create_job_set(rec, blobs, [c.name for c in circuits], queue=tasks.ROUTES[tasks.TRANSPILE])
        enqueue_job_set(self._cfg, rec.id, len(bounds), local=is_local(bname))
        hooks.emit("job_set_created", record=rec)
        return ManagedJobSet(rec.id, self._store, self._cfg)

    def retrieve_job_set(self, job_set_id: str, provider: Any = None, refresh: bool = False) -> ManagedJobSet:
        """The set with that id, from any process or host that reaches the same Redis.

        ``provider`` and ``refresh`` are the old Job Manager's arguments, accepted so its code
        runs: Redis knows the set and its backend, and every read is fresh."""
        self._store.ping()
        return ManagedJobSet(job_set_id, self._store, self._cfg)

    def job_sets(self, name: str | None = None, tags: list[str] | None = None) -> list[ManagedJobSet]:
        """Job sets newest first, optionally those with this name and all of these tags."""
        self._store.ping()
        wanted = set(tags or ())
        out = []
        for sid in self._store.job_set_ids():
            js = ManagedJobSet(sid, self._store, self._cfg)
            if (name is None or js.name() == name) and wanted <= set(js.tags()):
                out.append(js)
        return out

    def report(self, detailed: bool = True) -> str:
        """The report of every job set, newest first."""
        sets = self.job_sets()
        if not sets:
            return "No job sets."
        return "\n\n".join(js.report(detailed) for js in sets)
