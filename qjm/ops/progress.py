"""Live progress of a job set until it is final: a bar of its experiments, one of its jobs, and
one per job showing how far along its lifecycle it is.

Used by ``job_set.wait(progress=True)`` and ``qjm watch``; it draws whatever snapshots the job
set's one wait loop (``ManagedJobSet.snapshots``) yields. It is built on ``rich.progress``, which
draws in place in a terminal and as a widget in Jupyter (with ``ipywidgets`` installed), and
prints only the final picture when the output is a file or pipe. Watching never changes the set:
Ctrl-C stops the display and raises ``KeyboardInterrupt``; the workers carry on.

Counts say what they count ("3/10 experiments", "1/4 jobs"): a job's own bar moves through its
lifecycle's steps, and numbered the same way it read like a count of jobs, so it has no count.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..lifecycle import FINAL_RANK, JobSetStatus, JobStatus
from ..store import Snapshot
from ..usage import SetUsage

#: Seconds between two reads of a set's QPU time while it is watched.
QPU_REFRESH_SECONDS = 1.0

#: Above this many jobs, per-job bars would scroll off the screen: the jobs' bar alone stays.
MAX_JOB_BARS = 20
#: How often the bars are redrawn while the set runs.
REFRESH_SECONDS = 0.25

_STYLE = {JobStatus.DONE: "green", JobStatus.ERROR: "red", JobStatus.CANCELLED: "yellow",
          JobStatus.RUNNING: "cyan", JobStatus.SUBMITTED: "blue", JobStatus.TRANSPILING: "magenta",
          JobStatus.TRANSPILED: "magenta", JobStatus.HELD: "bright_red"}
_SET_STYLE = {JobSetStatus.DONE: "green", JobSetStatus.ERROR: "red", JobSetStatus.CANCELLED: "yellow"}


def _label(status: JobStatus) -> str:
    style = _STYLE.get(status)
    return f"[{style}]{status.value}[/]" if style else status.value


def _counts_line(statuses: list[JobStatus]) -> str:
    counts = Counter(statuses)
    return "  ".join(f"{_label(s)} {counts[s]}" for s in JobStatus if counts[s])


def qpu_line(usage: SetUsage) -> str:
    """A set's QPU seconds in one line: consumed and estimated (and its budget, if any)."""
    line = f"{usage.consumed:.1f} s consumed, {usage.estimate:.1f} s estimated"
    if usage.budget is not None:
        line += f", budget {usage.budget:.1f} s"
    return line + (f", {usage.held} job(s) held" if usage.held else "")


def watch(snapshots: Iterable[Snapshot], console: Console | None = None,
          qpu: Callable[[], SetUsage] | None = None) -> JobSetStatus:
    """Draw each snapshot (made with job statuses) until the set is final; its final status.
    ``qpu`` reads the set's QPU time (a remote set), shown under the set's bar.

    A timeout is the snapshots' own (``JobSetTimeoutError`` passes through)."""
    console = console or Console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console,
                        refresh_per_second=4, transient=False)
    rows: tuple[TaskID, TaskID] | None = None  # the set's experiments, its jobs
    qpu_task: TaskID | None = None
    qpu_read = 0.0
    per_job: dict[int, TaskID] = {}
    with progress:
        for snap in snapshots:
            rec, statuses = snap.record, snap.statuses or []
            if rows is None:
                rows = (progress.add_task(f"[bold]{rec.name or rec.id[:12]} on {rec.backend}[/]",
                                          total=rec.n_experiments, state="", count=""),
                        progress.add_task("  jobs", total=rec.n_jobs, state="", count=""))
                if rec.n_jobs <= MAX_JOB_BARS:
                    for k, (start, stop) in enumerate(rec.job_bounds):
                        per_job[k] = progress.add_task(f"  job {k} ({start}-{stop - 1})", total=FINAL_RANK, state="",
                                                       count="")
                if qpu is not None:
                    qpu_task = progress.add_task("  QPU time", total=None, state="", count="", visible=True)
            if qpu_task is not None and qpu is not None and (snap.final or time.monotonic() - qpu_read >= QPU_REFRESH_SECONDS):
                qpu_read = time.monotonic()
                progress.update(qpu_task, state=qpu_line(qpu()))
            done = sum(stop - start for (start, stop), s in zip(rec.job_bounds, statuses, strict=True) if s.final)
            style = _SET_STYLE.get(rec.status)
            overall, jobs = rows
            progress.update(overall, completed=done, count=f"{done}/{rec.n_experiments} experiments",
                            state=f"[bold {style}]{rec.status.value}[/]" if style else rec.status.value)
            ended = sum(1 for s in statuses if s.final)
            progress.update(jobs, completed=ended, count=f"{ended}/{rec.n_jobs} jobs", state=_counts_line(statuses))
            for k, s in enumerate(statuses):
                if k in per_job:  # its bar moves through the lifecycle's steps; its state says which
                    progress.update(per_job[k], completed=s.rank, state=_label(s))
            if snap.final:
                progress.refresh()
                return rec.status
    raise RuntimeError("the snapshots ended before the job set was final")  # pragma: no cover
