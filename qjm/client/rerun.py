"""Re-running the failed jobs of a final set, under the same set id (``ManagedJobSet.rerun_failed``).

The set reads RUNNING again at once, so ``results()`` right after waits for the new outcome. Each
failed (ERROR or CANCELLED) job starts a new attempt (``retries.RERUN``): from its transpiled
circuits when it has them, else from transpilation; its earlier attempts stay in its history.
Jobs that were DONE keep their results and are not run again. The set's keys get a fresh TTL.
"""

from __future__ import annotations

import time

from ..config import Settings
from ..engine import dispatch, retries, tasks
from ..engine.transitions import Transitions
from ..errors import JobSetRunningError
from ..executors import is_local
from ..formats import codec
from ..lifecycle import JobStatus, Step
from ..store import JobRecord, JobSetRecord, Store, keys, scripts

FAILED = (JobStatus.ERROR, JobStatus.CANCELLED)


def _restore_results(store: Store, rec: JobSetRecord, jobs: list[JobRecord]) -> None:
    """A finished set keeps its DONE jobs' records only in its combined result; the re-run's
    assembly reads them per job, so put them back first (a no-op where they are still kept)."""
    done = [job for job in jobs if job.status is JobStatus.DONE]
    if not done or rec.options.get("pubs"):
        return
    p = store.r.pipeline(transaction=False)
    for job in done:
        p.exists(keys.result(rec.id, job.index))
    missing = [job for job, there in zip(done, p.execute(), strict=True) if not there]
    combined = store.outputs.legacy_combined(rec.id) if missing else None
    if not combined:
        return
    p = store.r.pipeline(transaction=False)
    for job in missing:
        p.set(keys.result(rec.id, job.index), codec.dumps(combined["results"][job.start:job.stop]), ex=store.ttl)
    p.execute()


def renew_ttl(store: Store, rec: JobSetRecord) -> float:
    """Give every key of the set a fresh TTL; returns the new expiry time."""
    p = store.r.pipeline(transaction=False)
    for key in keys.set_keys(rec.id, rec.n_jobs):
        p.expire(key, store.ttl)
    p.execute()
    return time.time() + store.ttl


def rerun_failed(store: Store, cfg: Settings, sid: str) -> list[int]:
    """Re-run the set's failed jobs; returns their indices (none if no job failed)."""
    rec = store.job_set(sid)
    if not rec.status.final:
        raise JobSetRunningError(
            f"Job set {sid} is still {rec.status.value}: wait() for it (or cancel() it) before rerun_failed().")
    jobs = store.jobs(sid, rec.n_jobs)
    failed = [job for job in jobs if job.status in FAILED]
    if not failed:
        return []
    _restore_results(store, rec, jobs)
    reopened = scripts.load(store.r, "reopen")(keys=[keys.job_set(sid), keys.combined(sid)], args=[repr(time.time())])
    if not reopened:
        raise JobSetRunningError(f"Job set {sid} is being re-run already.")
    store.r.zadd(keys.RUNNING, {sid: rec.created})
    local = is_local(rec.backend)
    transitions = Transitions(store)
    first: dict[int, Step] = {}
    for job in failed:
        transpiled = bool(store.r.exists(keys.isa(sid, job.index)))
        start = JobStatus.TRANSPILED if transpiled else JobStatus.QUEUED
        why = job.error or f"the job ended {job.status.value}"
        if transitions.new_attempt(sid, job.index, job.attempt, why, kind=retries.RERUN, start=start):
            step = Step.SUBMIT if transpiled else Step.TRANSPILE
            queue = tasks.CPU_QUEUE if step is Step.TRANSPILE or local else tasks.IO_QUEUE
            store.set_job_fields(sid, job.index, resends=0)
            store.steps.plan(sid, job.index, step, queue)
            first[job.index] = step
    expires = renew_ttl(store, rec)
    store.index.update(store.job_set(sid), expires=expires)
    if first:
        dispatch.enqueue_jobs(cfg, sid, first, local, epochs={job.index: job.poll_epoch for job in failed})
    return sorted(first)
