"""``JobManager``: splits circuits into jobs, hands them to the workers, finds job sets again."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit
from qiskit.providers import BackendV2

from .. import compat
from ..backends import BackendInfo, Catalog, check_candidates
from ..config import Settings
from ..config import settings as load_settings
from ..engine import hooks, partition, tasks
from ..engine.dispatch import enqueue_job_set, jobs_per_message
from ..errors import InvalidInputError, QJMError, UnknownBackendError
from ..executors import Primitive, RunOptions, for_backend, is_local, local_backend_names
from ..formats import codec, pubs, validation
from ..lifecycle import JobSetStatus
from ..store import JobSetRecord, Store, new_job_set_id
from ..usage import InstanceUsage, check_budget, instance_usage
from . import deletion, labels, listing
from .job_set import ManagedJobSet


def backend_names(backend: Any) -> list[str]:
    """``run``'s backend: one (a name, a backend object, a ``BackendInfo``) or a list of them
    to fan the set out over."""
    if isinstance(backend, (list, tuple)):
        if not backend:
            raise UnknownBackendError("backend list is empty: name at least one backend.")
        return [backend_name(b) for b in backend]
    return [backend_name(backend)]


def backend_name(backend: Any) -> str:
    """A backend is given by name or as an object (fake backends and simulators by their name)."""
    if isinstance(backend, BackendInfo):
        return backend.name
    if isinstance(backend, str):
        if not backend.strip():
            raise UnknownBackendError("backend is empty: give a name such as 'fake_manila' or 'aer_simulator'.")
        return backend.strip()
    name = getattr(backend, "name", None)
    name = name() if callable(name) else name
    _refuse_configured_simulator(backend, name)
    if isinstance(name, str) and name:
        return name
    raise UnknownBackendError(f"Cannot tell the backend's name from {backend!r}: pass its name as a string.")


def _refuse_configured_simulator(backend: Any, name: Any) -> None:
    """Workers rebuild a backend from its name, so a simulator object carrying its own
    configuration (a noise model, a device it was made from) would silently run as another."""
    if type(backend).__name__ != "AerSimulator":
        return
    noise = getattr(getattr(backend, "options", None), "noise_model", None)
    if name == "aer_simulator" and noise is None:
        return
    raise InvalidInputError(
        f"This AerSimulator ({name}) carries configuration qjm cannot send to its workers (a noise model or a "
        "device it was made from). Pass the device's name instead, e.g. backend='fake_manila' to simulate "
        "that device with its noise model, or backend='aer_simulator' for an ideal simulation.")


def _resolve_backend(name: str) -> BackendV2:
    """The backend's target, or an error that says which names work and how to reach IBM."""
    try:
        return for_backend(name).backend()
    except UnknownBackendError:
        raise
    except QJMError as exc:
        raise UnknownBackendError.unknown(name, local_backend_names(), (
            f"not a local backend, and IBM Quantum could not be asked for its devices ({exc}); to reach it, set "
            "QISKIT_IBM_TOKEN and QISKIT_IBM_INSTANCE (or QISKIT_IBM_URL for a qjm emulator), or save an account "
            "with qiskit-ibm-runtime")) from exc


DEFAULT_SHOTS = 1024


@dataclass(frozen=True)
class Split:
    """A set cut into jobs: each job's range of experiments and circuits (QPY); for pubs, each
    job's piece entries and the set's layout (``qjm.formats.pubs``)."""

    bounds: list[tuple[int, int]]
    circuits: list[bytes]
    names: list[str]
    entries: list[bytes] | None = None
    layout: bytes | None = None


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

    @property
    def catalog(self) -> Catalog:
        return Catalog(self._store, self._cfg)

    def backends(self, name: str | None = None, min_num_qubits: int | None = None, operational: bool | None = None,
                 simulator: bool | None = None, filters: Callable[[BackendInfo], bool] | None = None) -> list[BackendInfo]:
        """Every backend qjm can run on, as ``BackendInfo`` records: the local ones (the fake
        devices and ``aer_simulator``) and the devices of the configured IBM Quantum account, with
        their status, the service's queue and qjm's own jobs in flight there. ``filters`` takes a
        ``BackendInfo``, e.g. ``filters=lambda b: b.num_qubits >= 5 and not b.simulator``."""
        return self.catalog.backends(name, min_num_qubits, operational, simulator, filters)

    def least_busy(self, min_num_qubits: int | None = None, filters: Callable[[BackendInfo], bool] | None = None,
                   **criteria: Any) -> BackendInfo:
        """The operational device with the fewest jobs ahead (the service's queue, or qjm's own jobs
        there when more); ``simulator=True`` chooses among local backends. Raises
        ``UnknownBackendError`` when none fits."""
        return self.catalog.least_busy(min_num_qubits, filters, **criteria)

    def run(
        self,
        experiments: Any,
        backend: str | BackendV2 | BackendInfo | list[str | BackendV2 | BackendInfo],
        name: str | None = None,
        max_experiments_per_job: int | None = None,
        job_tags: list[str] | None = None,
        primitive: str = "sampler",
        shots: int | None = None,
        precision: float | None = None,
        options: dict[str, Any] | None = None,
        optimization_level: int = 2,
        seed_simulator: int | None = None,
        memory: bool = False,
        max_retries: int = 0,
        max_qpu_seconds: float | None = None,
        parameter_binds: list[dict[Any, Any]] | None = None,
        job_share_level: Any = None,
        **run_config: Any,
    ) -> ManagedJobSet:
        """Validate, split, store and enqueue; returns at once with the set's live view.

        ``experiments`` are circuits (the counts API) or pubs of ``primitive``: Sampler pubs
        ``(circuit, parameter_values, shots)``, Estimator pubs ``(circuit, observables,
        parameter_values, precision)`` or Qiskit's pub objects. ``shots`` (default 1024) and
        ``precision`` are the defaults a pub's own value overrides; ``options`` are the
        primitive's options. ``max_qpu_seconds`` is a budget of QPU seconds for the set (README,
        "QPU time"): a job whose estimate does not fit waits unposted, HELD. Every check runs
        before anything is written, so a bad call leaves no trace.

        The old Job Manager's arguments run too (``qjm.compat``): ``parameter_binds`` binds every
        circuit with every bind (m circuits x n binds: m*n experiments, circuit by circuit), the
        ``run_config`` keys that still mean something are taken and the others refused, and
        ``job_share_level`` is ignored with a warning.
        """
        compat.warn_job_share_level(job_share_level)
        compat.check_run_config(run_config)
        kind = validation.check_primitive(primitive)
        items = validation.as_experiment_list(experiments)
        if parameter_binds is not None and kind is not Primitive.SAMPLER:
            raise InvalidInputError("parameter_binds binds circuits for the counts API; an Estimator's pubs carry "
                                    "their own parameter values.")
        items = compat.bind_parameters(items, parameter_binds)
        pubs.check_defaults(kind, DEFAULT_SHOTS if shots is None else shots, precision, shots_given=shots is not None)
        shots = DEFAULT_SHOTS if shots is None else int(shots)
        validation.check_options(max_experiments_per_job, shots if kind is Primitive.SAMPLER else None,
                                 optimization_level, self._cfg.max_executions_per_job)
        primitive_options = validation.check_primitive_options(kind, options)
        tags = validation.check_tags(job_tags)
        retries = validation.check_max_retries(max_retries)
        budget = check_budget(max_qpu_seconds)
        if name is not None:
            labels.check_name(name, "name")
        names = backend_names(backend)
        if len(names) > 1:
            check_candidates(names, lambda: self.catalog.remote_names())
        targets = [_resolve_backend(n) for n in names]
        # Jobs are cut to fit every backend; a circuit must fit at least the widest.
        target, bname = max(zip(targets, names, strict=True), key=lambda tn: tn[0].num_qubits)
        max_circuits = [m for t in targets if (m := getattr(t, "max_circuits", None))]
        run_options = RunOptions(shots=shots, memory=bool(memory), seed_simulator=seed_simulator,
                                 optimization_level=optimization_level, primitive=kind.value, precision=precision,
                                 primitive_options=primitive_options)
        counts = kind is Primitive.SAMPLER and primitive_options is None and all(pubs.is_plain(e) for e in items)
        if counts:
            split = self._split_circuits(items, target, bname, max_experiments_per_job, shots,
                                         min(max_circuits) if max_circuits else None)
        else:
            run_options = dataclasses.replace(run_options, pubs=True)
            split = self._split_pubs(items, target, bname, kind, shots, precision, max_experiments_per_job)
        self._store.ping()
        rec = JobSetRecord(id=new_job_set_id(), name=name, backend=names[0], tags=tags, created=time.time(),
                           n_experiments=len(items), job_bounds=split.bounds, options=run_options.to_json(),
                           max_retries=retries, backends=names if len(names) > 1 else [], qpu_budget=budget)
        self._store.create_job_set(rec, split.circuits, split.names, queue=tasks.ROUTES[tasks.TRANSPILE],
                                   job_pubs=split.entries, layout=split.layout)
        local = is_local(names[0])
        per_message = jobs_per_message(self._cfg, [b - a for a, b in split.bounds], shots if counts else None, local)
        enqueue_job_set(self._cfg, rec.id, len(split.bounds), local=local, per_message=per_message)
        hooks.emit("job_set_created", record=rec)
        return ManagedJobSet(rec.id, self._store, self._cfg)

    def _split_circuits(self, circuits: list[QuantumCircuit], target: BackendV2, bname: str,
                        max_experiments_per_job: int | None, shots: int, max_circuits: int | None) -> Split:
        """The counts API: consecutive circuits per job, sized by ``max_circuits`` and executions."""
        validation.check_circuits(circuits, target, bname)
        size = validation.experiments_per_job(max_experiments_per_job, max_circuits, shots,
                                              self._cfg.default_max_experiments, self._cfg.max_executions_per_job)
        bounds = validation.split(len(circuits), size)
        return Split(bounds, [codec.circuits_to_qpy(circuits[a:b]) for a, b in bounds], [c.name for c in circuits])

    def _split_pubs(self, items: list[Any], target: BackendV2, bname: str, kind: Primitive, shots: int,
                    precision: float | None, max_experiments_per_job: int | None) -> Split:
        """Pubs: coerced by Qiskit's rules, grouped and cut into jobs by executions (``qjm.engine.partition``)."""
        coerced = pubs.as_pubs(items, kind, shots, precision)
        validation.check_pub_widths(coerced, target.num_qubits, bname)
        jobs = partition.plan_jobs(coerced, self._cfg.max_executions_per_job,
                                   max_experiments_per_job or self._cfg.default_max_experiments)
        bounds = [(min(p.pub for p in job), max(p.pub for p in job) + 1) for job in jobs]
        blobs = [codec.circuits_to_qpy(coerced[p.pub].circuit for p in job) for job in jobs]
        entries = [codec.dumps([pubs.piece_entry(coerced[p.pub], p) for p in job]) for job in jobs]
        layout = codec.dumps([[p.to_json() for p in job] for job in jobs])
        return Split(bounds, blobs, [pub.circuit.name for pub in coerced], entries, layout)

    def retrieve_job_set(self, job_set_id: str, provider: Any = None, refresh: bool = False) -> ManagedJobSet:
        """The set with that id, from any process or host that reaches the same Redis.

        ``provider`` and ``refresh`` are the old Job Manager's arguments, accepted so its code
        runs: Redis knows the set and its backend, and every read is fresh."""
        self._store.ping()
        return ManagedJobSet(job_set_id, self._store, self._cfg)

    def job_sets(self, name: str | None = None, tags: list[str] | None = None, backend: str | None = None,
                 status: JobSetStatus | str | None = None, limit: int | None = None) -> list[ManagedJobSet]:
        """Job sets newest first: those with this name, all of these tags, on this backend (for a
        set over several, one a job of it was placed on), in this status; at most ``limit`` of
        them. Answered from Redis indexes (``qjm.store.index``), so
        a call costs what it returns, not what Redis keeps."""
        return listing.job_sets(self._store, self._cfg, name, tags, backend, status, limit)

    def delete_job_set(self, job_set_id: str) -> None:
        """Delete the set: cancel it if it runs, then remove it from Redis and every listing.
        Tasks still in flight end quietly; a remote set's keys go once a worker has cancelled
        its remote jobs."""
        self._store.ping()
        deletion.delete_job_set(self._store, self._cfg, job_set_id)

    def usage(self, instance: str | None = None) -> InstanceUsage:
        """The instance's QPU time this UTC month (the configured one, or ``instance``): what
        qjm's jobs were charged and hold, ``QJM_QPU_SECONDS_PER_MONTH`` and what is left of it,
        and the service's own figures."""
        return instance_usage(self._store, self._cfg, instance)

    def report(self, detailed: bool = True) -> str:
        """The report of every job set, newest first."""
        sets = self.job_sets()
        if not sets:
            return "No job sets."
        return "\n\n".join(js.report(detailed) for js in sets)
