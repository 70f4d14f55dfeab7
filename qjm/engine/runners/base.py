"""What every job runner shares: the guard before a job runs, loading its work, transitions."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
from qiskit import QuantumCircuit

from ...config import Settings
from ...executors import Executor, JobWork, Primitive, RunOptions
from ...formats import codec
from ...formats.pubs import from_entry
from ...lifecycle import JobStatus
from ...store import JobRecord, JobSetRecord, Store
from ..transitions import Transitions

ExecutorFor = Callable[[str], Executor]


def job_seed(seed: int | None, i: int) -> int | None:
    """Job ``i``'s own simulator seed, derived from the set's: jobs (and so the slices of a
    split sweep) are not correlated, and the same seed gives the same set again."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])


def work_from(store: Store, rec: JobSetRecord, i: int, circuits: list[QuantumCircuit]) -> JobWork:
    """Job ``i``'s work from its transpiled circuits: one Sampler pub per circuit for a counts
    set; for a pub set its pieces' pubs on the ISA circuits (observables laid out on them)."""
    opts = RunOptions.from_json(rec.options)
    opts = dataclasses.replace(opts, seed_simulator=job_seed(opts.seed_simulator, i))
    if not opts.pubs:
        return JobWork.from_circuits(circuits, opts)
    entries = store.job_pubs(rec.id, i)
    if entries is None or len(entries) != len(circuits):
        raise ValueError(f"job {i} has {len(circuits)} circuits but "
                         f"{'no' if entries is None else len(entries)} stored pub entries")
    primitive = Primitive(opts.primitive)
    return JobWork([from_entry(c, e, primitive) for c, e in zip(circuits, entries, strict=True)], opts,
                   prepared=store.prepared(rec.id, i))


class JobRunner(ABC):
    def __init__(self, store: Store, cfg: Settings, executor_for: ExecutorFor,
                 transitions: Transitions | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.executor_for = executor_for
        self.transitions = transitions or Transitions(store)

    def submit(self, rec: JobSetRecord, i: int) -> None:
        """Run or post job ``i`` unless an earlier delivery did, the job is final, or the set was
        cancelled. Raises ``RetryLater`` when the step should run again later."""
        job = self.store.job(rec.id, i)
        if job.status.final or job.remote_id:
            return
        if rec.cancel_requested:
            self.transitions.cancel(rec.id, i)
            return
        try:
            executor = self.executor_for(rec.job_backend(job))
        except Exception as exc:  # noqa: BLE001 - an unusable backend fails this job only
            self.transitions.fail(rec.id, i, "submission", exc)
            return
        self._submit(rec, job, executor)

    @abstractmethod
    def _submit(self, rec: JobSetRecord, job: JobRecord, executor: Executor) -> None:
        """Run or post a job that passed the guard."""

    @abstractmethod
    def poll(self, rec: JobSetRecord, i: int) -> float | None:
        """Check the job once; seconds until the next check, or None when it is final."""

    def waits_inline(self, rec: JobSetRecord, delay: float) -> bool:
        """Whether the poll task waits ``delay`` before its next check itself (``qjm.engine.polling``)."""
        return False

    def close_batch(self, rec: JobSetRecord) -> None:
        """Close the set's batch on its backend, if it has one."""

    def cancel_set(self, rec: JobSetRecord, jobs: list[int] | None = None) -> None:
        """Stop what the backend still runs of a cancelled set (or of its cancelled ``jobs``)."""

    def abandon(self, rec: JobSetRecord, job: JobRecord, why: str) -> bool:
        """Give up on a job whose steps keep getting lost: it fails, so its set can end.
        Returns True when the job got a new attempt instead (``qjm.engine.retries``)."""
        self.transitions.advance(rec.id, job.index, JobStatus.ERROR, error=why)
        return False

    def load_work(self, rec: JobSetRecord, i: int, quiet: bool = False) -> JobWork | None:
        """The job's transpiled pubs and the set's options; None (and, unless ``quiet``, the job
        failed) if unusable."""
        blob = self.store.isa_qpy(rec.id, i)
        if blob is None:
            if not quiet:
                self.transitions.advance(rec.id, i, JobStatus.ERROR,
                                         error="no transpiled circuits were stored for this job")
            return None
        try:
            return work_from(self.store, rec, i, codec.circuits_from_qpy(blob))
        except Exception as exc:  # noqa: BLE001
            if quiet:
                raise
            self.transitions.fail(rec.id, i, "submission", exc)
            return None
