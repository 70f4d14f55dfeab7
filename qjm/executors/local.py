"""Local backends: the fake IBM devices (noisy, via qiskit-aer) and the ideal ``aer_simulator``.

A local job cannot be looked up from another process, so the simulation runs inside the
worker's submit step and the records come back with the submission.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from qiskit.primitives import PrimitiveResult
from qiskit.providers import BackendV2

from ..config import settings
from ..errors import ExecutorError, UnknownBackendError
from ..formats import codec
from .base import Executor, JobWork, Primitive, Submission, SubmitContext

AER = "aer_simulator"
#: The basis of IBM's current devices, which the executor Estimator takes: its twirling and
#: noise learning propagate only ``rz``/``rx`` as parametric one-qubit gates, so ``aer_simulator``'s
#: own target (it keeps ``ry``, ``u``, ...) makes pubs it refuses.
ESTIMATOR_BASIS = ("cz", "rz", "sx", "x")


@lru_cache(maxsize=1)
def _fake_classes() -> dict[str, type]:
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    out = {}
    for attr in dir(fake_provider):
        cls = getattr(fake_provider, attr)
        if isinstance(cls, type) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2:
            name = getattr(cls, "backend_name", None)
            if isinstance(name, str) and name.startswith("fake_"):
                out[name] = cls
    return out


def local_backend_names() -> list[str]:
    return sorted(_fake_classes()) + [AER]


@cache
def local_qubits(name: str) -> int:
    """A local backend's qubits. A fake device's are read from the configuration file it ships
    with: building all of them (their noise models) to list them takes tens of seconds."""
    cls = _fake_classes().get(name)
    conf = Path(getattr(cls, "dirname", ""), getattr(cls, "conf_filename", "")) if cls is not None else None
    if conf is not None and conf.is_file():
        try:
            return int(json.loads(conf.read_text())["n_qubits"])
        except (OSError, ValueError, KeyError):
            pass  # an unexpected file: build the backend instead
    return int(LocalExecutor(name).backend().num_qubits)


def is_local(name: str) -> bool:
    return name == AER or name.startswith("fake_")


def _threads() -> int:
    return settings().sim_threads



def local_job_id(job_set_id: str, job: int) -> str:
    """A local job's id, known before it runs: its worker records it when the job starts running, as
    a service gives an id at the post (the old Job Manager's ``jobs()`` waits for every job's id)."""
    return f"local:{job_set_id}:{job}"

class LocalExecutor(Executor):
    local = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        if name != AER and name not in _fake_classes():
            raise UnknownBackendError.unknown(name, local_backend_names(), "not a local backend")
        self._backend: BackendV2 | None = None
        self._simulator: Any = None

    def backend(self) -> BackendV2:
        if self._backend is None:
            if self.name == AER:
                from qiskit_aer import AerSimulator

                self._backend = AerSimulator()
            else:
                self._backend = _fake_classes()[self.name]()
        return self._backend

    def transpile_for(self, primitive: Primitive) -> dict[str, Any]:
        """Estimator pubs on the ideal simulator go to ``ESTIMATOR_BASIS`` with every qubit
        connected (no layout: observables keep their qubits); all else to the backend's target."""
        if self.name == AER and primitive is Primitive.ESTIMATOR:
            return {"basis_gates": list(ESTIMATOR_BASIS)}
        return super().transpile_for(primitive)

    def simulator(self) -> Any:
        if self._simulator is None:
            from qiskit_aer import AerSimulator

            if self.name == AER:
                self._simulator = AerSimulator(max_parallel_threads=_threads())
            else:
                self._simulator = AerSimulator.from_backend(self.backend(), max_parallel_threads=_threads())
        return self._simulator

    def primitive_mode(self) -> BackendV2:
        """What the local testing mode's executor primitives run on. Given a fake device they
        would simulate ``AerSimulator.from_backend(device)`` on every core; given that simulator
        they use it as it is, so the worker passes its own: the same noise model, built once per
        process, on ``QJM_SIM_THREADS`` threads (qjm scales by processes, not threads)."""
        return self.simulator()

    def run_primitive(self, work: JobWork) -> PrimitiveResult:
        """The job's pubs through qiskit-ibm-runtime's executor Sampler or Estimator in local
        testing mode, with the set's options, exactly as a user would run them by hand."""
        opts = dict(work.options.primitive_options or {})
        if work.options.seed_simulator is not None:
            opts["simulator"] = {**opts.get("simulator", {}), "seed_simulator": work.options.seed_simulator}
        if work.primitive is Primitive.SAMPLER:
            from qiskit_ibm_runtime.executor_sampler import Sampler

            primitive: Any = Sampler(mode=self.primitive_mode(), options={**opts, "default_shots": work.options.shots})
        else:
            from qiskit_ibm_runtime.executor_estimator import Estimator

            primitive = Estimator(mode=self.primitive_mode(), options=opts)
        return primitive.run(list(work.pubs)).result()

    def submit(self, work: JobWork, ctx: SubmitContext) -> Submission:
        remote_id = local_job_id(ctx.job_set_id, ctx.job)
        if work.options.pubs:
            return Submission(remote_id=remote_id, output=self.run_primitive(work))
        circuits, options = work.circuits, work.options
        run_opts: dict[str, Any] = {"shots": options.shots, "memory": options.memory}
        if options.seed_simulator is not None:
            run_opts["seed_simulator"] = options.seed_simulator
        result = self.simulator().run(circuits, **run_opts).result()
        if not result.success:
            raise ExecutorError(f"simulation failed: {result.status}")
        records = codec.records_from_qiskit_result(circuits, result, options.memory)
        return Submission(remote_id=remote_id, output=records)
