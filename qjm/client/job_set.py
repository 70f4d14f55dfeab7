"""``ManagedJobSet``: a live view of a job set stored in Redis (its jobs: ``qjm.client.job``).

They hold only ids and a store, so any process that reaches the same Redis sees the same set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from ..config import Settings
from ..engine.dispatch import enqueue_cancel, send_retag
from ..errors import ExperimentNotFoundError, InvalidInputError, JobSetFailedError, JobSetTimeoutError
from ..executors import RunOptions, is_local
from ..lifecycle import JobSetStatus, JobStatus
from ..ops import progress as progress_bars
from ..store import OUTCOME_FIELDS, JobRecord, JobSetRecord, Snapshot, Store
from ..usage import SetUsage, check_budget, set_usage
from . import labels, rerun
from . import report as reporting
from . import tags as tag_rules
from .job import ManagedJob
from .results import Experiment, ManagedResults
from .results import experiment_index as experiment_index_of


class ManagedJobSet:
    """A set of jobs that together run the experiments given to ``JobManager.run()``."""

    def __init__(self, job_set_id: str, store: Store, cfg: Settings) -> None:
        self._store = store
        self._cfg = cfg
        self._record: JobSetRecord = store.job_set(job_set_id)  # raises if it does not exist
        self._id = self._record.id  # as stored: an id is taken in either case

    # ---------------------------------------------------------------- identity
    def job_set_id(self) -> str:
        """The set's id: what ``retrieve_job_set`` and every ``qjm`` command take."""
        return self._id

    def name(self) -> str | None:
        """The set's name (``run(name=...)``, ``update_name``), or None."""
        return self._record.name

    def tags(self) -> list[str]:
        """The user's job tags of the set (qjm's own ``qjm:*`` tags are not listed)."""
        return list(self._record.tags)

    def backend_name(self) -> str:
        """The backend the set names (the first of a set over several: ``backend_names``)."""
        return self._record.backend

    def backend_names(self) -> list[str]:
        """The backends the set's jobs were placed on so far, in the order the set names them."""
        if not self._record.fans_out:
            return [self._record.backend]
        used = {job.backend for job in self._store.jobs(self._id, self._record.n_jobs, fields=("index", "status", "backend"))}
        return [b for b in self._record.candidates if b in used]

    def record(self) -> JobSetRecord:
        """The stored state of the set, read again."""
        self._record = self._store.job_set(self._id)
        return self._record

    # ---------------------------------------------------------------- state
    def status(self) -> JobSetStatus:
        """The set's status: RUNNING until every job is final, then DONE, ERROR or CANCELLED."""
        return self.record().status

    def statuses(self) -> list[JobStatus]:
        """One status per job, in job order (each equals ``qiskit.providers.JobStatus``'s member
        of the same meaning, see ``qjm.lifecycle``)."""
        return [job.status for job in self._store.jobs(self._id, self._record.n_jobs)]

    def jobs(self, timeout: float | None = None, wait: bool = True) -> list[ManagedJob]:
        """Every job of the set, in order, once each has its backend's id (``job_id()``) or is
        final without one (e.g. its transpilation failed), as the old Job Manager waited for every
        job to be submitted. A job HELD by a QPU-time budget counts as there (without an id): it
        is posted only once the budget changes, which no wait brings about. Raises
        ``JobSetTimeoutError`` after ``timeout`` seconds; with ``wait=False`` the jobs as they
        are now (``job_id()`` None for those not yet posted)."""
        records = self._wait_for_jobs(lambda job: bool(job.remote_id) or job.status.final or job.status is JobStatus.HELD,
                                      timeout,
                                      "every job to have its id") if wait else self._store.jobs(self._id, self._record.n_jobs)
        return [ManagedJob.of(self._store, self._id, job) for job in records]

    def managed_jobs(self) -> list[ManagedJob]:
        """The old Job Manager's ``managed_jobs()``: every job of the set as it is now."""
        return self.jobs(wait=False)

    def _wait_for_jobs(self, ready: Callable[[JobRecord], bool], timeout: float | None, what: str) -> list[JobRecord]:
        """The set's jobs once ``ready`` holds for each; a job's move wakes no one, so this reads
        them backing off from 20 ms to 0.5 s (the set's final notice wakes it at once)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.02
        with self._store.final_notice(self._id) as pause:
            while True:
                records = self._store.jobs(self._id, self._record.n_jobs)
                if all(ready(job) for job in records):
                    return records
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobSetTimeoutError(f"Job set {self._id}: waited {timeout} s for {what}; it keeps running. "
                                             "Job statuses: " + ", ".join(job.status.value for job in records))
                pause(delay if deadline is None else min(delay, deadline - time.monotonic()))
                delay = min(delay * 1.5, 0.5)

    def job(self, experiment: Experiment) -> tuple[ManagedJob, int]:
        """The job that runs an experiment (given by global index, name or circuit, as for
        ``results().get_counts``), and the experiment's index within that job (for a pub split
        over several jobs, the job of its first slice)."""
        names: list[str | None]
        if isinstance(experiment, int) and not isinstance(experiment, bool):
            names = [None] * self._record.n_experiments  # an index needs no names
        else:
            names = list(self._store.names(self._id))
        experiment_index = experiment_index_of(experiment, names, self._id)
        if RunOptions.from_json(self._record.options).pubs:  # pubs are grouped: the layout says where
            for k, pieces in enumerate(self._store.layout(self._id) or []):
                for pos, (pub, _rows) in enumerate(pieces):
                    if pub == experiment_index:  # a split pub: its first slice's job
                        return ManagedJob.of(self._store, self._id, self._store.job(self._id, k)), pos
        for k, (start, stop) in enumerate(self._record.job_bounds):
            if start <= experiment_index < stop:
                return ManagedJob.of(self._store, self._id, self._store.job(self._id, k)), experiment_index - start
        raise ExperimentNotFoundError(f"Experiment {experiment_index} is in no job")  # unreachable by construction

    def error_messages(self, timeout: float | None = None, wait: bool = True) -> str | None:
        """Once the set is final (as the old Job Manager did; ``timeout`` as for ``wait()``,
        ``wait=False`` for the answer now): None when nothing failed, otherwise one line per
        failed or cancelled job."""
        if wait:
            self.wait(timeout)
        bad = [job for job in self._store.jobs(self._id, self._record.n_jobs)
               if job.status in (JobStatus.ERROR, JobStatus.CANCELLED)]
        if not bad:
            return None
        return "\n".join(reporting.error_line(job) for job in bad)

    def report(self, detailed: bool = True) -> str:
        """Totals by status, then (``detailed``) one block per job: its experiments, backend, status, error and attempts."""
        return reporting.job_set_report(self.record(), self._store.jobs(self._id, self._record.n_jobs), detailed)

    # ---------------------------------------------------------------- waiting & results
    def snapshots(self, timeout: float | None = None, every: float | None = None,
                  jobs: bool = False) -> Iterator[Snapshot]:
        """The set's state now, then again whenever it may have changed, until it is final (the
        last snapshot yielded is final). The one wait loop: ``wait()`` and the progress bars use it.

        The set's end is announced on a Redis channel, so the loop wakes at once; reading the
        state now and then is the safety net (every ``every`` seconds if given, else backing off
        from 20 ms to 0.5 s, and to 2 s after a minute). ``jobs`` adds every job's status.
        Raises ``JobSetTimeoutError`` after ``timeout`` seconds; the set keeps running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, started = every or 0.02, time.monotonic()
        with self._store.final_notice(self._id) as pause:
            while True:
                rec = self.record()
                snap = Snapshot(rec, self._store.job_statuses(self._id, rec.n_jobs) if jobs else None)
                yield snap
                if snap.final:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobSetTimeoutError(
                        f"Job set {self._id} is still {rec.status.value} after {timeout} s; it keeps running. "
                        "Job statuses: " + ", ".join(s.value for s in self.statuses()))
                pause(delay if deadline is None else min(delay, deadline - time.monotonic()))
                if every is None:
                    delay = min(delay * 1.5, 0.5 if time.monotonic() - started < 60 else 2.0)

    def wait(self, timeout: float | None = None, progress: bool = False) -> JobSetStatus:
        """Block until the set is final; raises ``JobSetTimeoutError`` after ``timeout`` seconds.
        With ``progress``, draw live bars meanwhile (terminal or Jupyter)."""
        if progress:
            return progress_bars.watch(self.snapshots(timeout, every=progress_bars.REFRESH_SECONDS, jobs=True))
        for snap in self.snapshots(timeout):
            last = snap
        return last.record.status

    def results(self, timeout: float | None = None, partial: bool = False, refresh: bool = False) -> ManagedResults:
        """Wait for the set, then return its combined results.

        Without ``partial`` a set with failed or cancelled jobs raises ``JobSetFailedError``
        naming them; with it, the experiments that have results are returned. ``refresh`` is the
        old Job Manager's argument, accepted so its code runs: every call reads Redis afresh.
        """
        if partial:  # a job held for QPU time is not waited for: what ran is there
            for snap in self.snapshots(timeout, jobs=True):
                if snap.final or all(s.final or s is JobStatus.HELD for s in snap.statuses or []):
                    break
        else:
            self.wait(timeout)
        jobs = self._store.jobs(self._id, self._record.n_jobs, fields=OUTCOME_FIELDS)
        bad = [job for job in jobs if job.status is not JobStatus.DONE]
        if bad and not partial:
            raise JobSetFailedError(
                f"{len(bad)} of {len(jobs)} jobs of set {self._id} did not complete; call "
                "results(partial=True) for the rest.\n" + "\n".join(reporting.error_line(job) for job in bad))
        return ManagedResults(self._store, self.record(), jobs, reporting.error_line)

    # ---------------------------------------------------------------- control
    def cancel(self) -> list[JobStatus]:
        """Cancel every job not yet final; running remote jobs are cancelled by a worker."""
        cancelled = self._store.request_cancel(self._id)
        if cancelled or self._record.batch_id:
            enqueue_cancel(self._cfg, self._id)
        return self.statuses()

    # ---------------------------------------------------------------- QPU time
    def usage(self) -> SetUsage:
        """The set's QPU seconds: consumed, reserved, estimated, its budget, consumed per backend."""
        return set_usage(self._store, self.record())

    def update_budget(self, seconds: float | None) -> SetUsage:
        """A new budget of QPU seconds for the set (None lifts it): held jobs go on within it
        (each looks again within ``qjm.usage.HELD_RETRY`` seconds)."""
        budget = check_budget(seconds, "the budget")
        self.record()
        self._store.usage.set_budget(self._id, budget)
        return self.usage()

    def rerun_failed(self) -> list[ManagedJob]:
        """Run again the jobs of this final set that ended ERROR or CANCELLED, under the same set
        id, and nothing else; returns them (empty if none failed). The set is RUNNING again at
        once; each job keeps its earlier attempts in its history. Raises ``JobSetRunningError``
        while the set is still running."""
        indices = rerun.rerun_failed(self._store, self._cfg, self._id)
        self.record()
        return [ManagedJob.of(self._store, self._id, self._store.job(self._id, i)) for i in indices]

    # ---------------------------------------------------------------- name and tags
    def update_name(self, name: str) -> str:
        """Rename the set; returns the new name."""
        self._record = self._store.relabel(self._id, name=labels.check_name(name))  # checked first (qjm.client.labels)
        return name

    def update_tags(self, replacement_tags: Iterable[str] | None = None, additional_tags: Iterable[str] | None = None,
                    removal_tags: Iterable[str] | None = None) -> list[str]:
        """Change the set's tags as the old Job Manager did: ``replacement_tags`` replace them all,
        then ``additional_tags`` are added and ``removal_tags`` taken away. Returns the new tags.

        The result is checked against qjm's and the service's rules (``qjm.client.tags``) before
        anything is written; a worker then puts them on every remote job posted so far, beside
        qjm's own ``qjm:*`` tags (jobs posted later carry them anyway). A call without any of
        the three is refused, as the old Job Manager refused it."""
        if replacement_tags is None and additional_tags is None and removal_tags is None:
            raise InvalidInputError("update_tags() changes nothing without replacement_tags, additional_tags or "
                                    "removal_tags; to remove every tag, pass replacement_tags=[].")
        new = tag_rules.updated_tags(self.record().tags, replacement_tags, additional_tags, removal_tags)
        self._record = self._store.relabel(self._id, tags=new)
        if not is_local(self._record.backend):
            send_retag(self._cfg, self._id)
        return new

    def __eq__(self, other: object) -> bool:
        """Two views of one set (e.g. ``run()``'s and ``job_sets()``'s) are equal."""
        if not isinstance(other, ManagedJobSet):
            return NotImplemented
        return self._id == other._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"<ManagedJobSet {self._id} name={self._record.name!r} backend={self._record.backend}>"
