"""Live progress of a job set: one bar for the set and one per job, until the set is final.

Used by ``job_set.wait(progress=True)`` and ``qjm watch``. It is built on ``rich.progress``, which
draws in place in a terminal and as a widget in Jupyter (with ``ipywidgets`` installed), and prints
only the final picture when the output is a file or pipe. Watching never changes the set:
Ctrl-C stops the display and raises ``KeyboardInterrupt``; the workers carry on.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .errors import JobSetTimeoutError
from .status import JobSetStatus, JobStatus

if TYPE_CHECKING:
    from .job_set import ManagedJobSet

#: Above this many jobs, per-job bars would scroll off the screen; one line of counts replaces them.
MAX_JOB_BARS = 20

# A job's bar advances one step per stage it reaches; final statuses fill it.
_STAGE = {JobStatus.QUEUED: 0, JobStatus.TRANSPILING: 1, JobStatus.SUBMITTED: 2, JobStatus.RUNNING: 3}
_STAGES = 4
_STYLE = {JobStatus.DONE: "green", JobStatus.ERROR: "red", JobStatus.CANCELLED: "yellow",
          JobStatus.RUNNING: "cyan", JobStatus.SUBMITTED: "blue", JobStatus.TRANSPILING: "magenta"}


def _label(status: JobStatus) -> str:
    style = _STYLE.get(status)
    return f"[{style}]{status.value}[/]" if style else status.value


def _counts_line(statuses: list[JobStatus]) -> str:
    counts = Counter(statuses)
    return "  ".join(f"{_label(s)} {counts[s]}" for s in JobStatus if counts[s])


def watch(job_set: "ManagedJobSet", timeout: float | None = None, console: Console | None = None,
          interval: float = 0.25) -> JobSetStatus:
    """Show the set's progress until it is final and return its final status.

    Raises ``JobSetTimeoutError`` after ``timeout`` seconds, like ``wait(timeout)``.
    """
    console = console or Console()
    rec = job_set.record()
    sid = job_set.job_set_id()
    title = f"{rec.name or sid[:12]} on {rec.backend}"
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console,
                        refresh_per_second=4, transient=False)
    with progress:
        overall = progress.add_task(f"[bold]{title}[/] experiments", total=rec.n_experiments, state="")
        per_job: dict[int, TaskID] = {}
        summary: TaskID | None = None
        if rec.n_chunks <= MAX_JOB_BARS:
            for k, (start, stop) in enumerate(rec.chunk_bounds):
                per_job[k] = progress.add_task(f"  job {k} ({start}-{stop - 1})", total=_STAGES, state="")
        else:
            summary = progress.add_task(f"  {rec.n_chunks} jobs", total=rec.n_chunks, state="")
        while True:
            rec = job_set.record()
            statuses = job_set.statuses()  # one round trip for all jobs
            done = sum(stop - start for (start, stop), s in zip(rec.chunk_bounds, statuses) if s.final)
            progress.update(overall, completed=done, state=_label_set(rec.status))
            for k, s in enumerate(statuses):
                if k in per_job:
                    progress.update(per_job[k], completed=_STAGES if s.final else _STAGE[s], state=_label(s))
            if summary is not None:
                progress.update(summary, completed=sum(1 for s in statuses if s.final), state=_counts_line(statuses))
            if rec.status.final:
                progress.refresh()
                return rec.status
            if deadline is not None and time.monotonic() >= deadline:
                raise JobSetTimeoutError(f"Job set {sid} is still {rec.status.value} after {timeout} s; "
                                         "it keeps running.")
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))


def _label_set(status: JobSetStatus) -> str:
    style = {JobSetStatus.DONE: "green", JobSetStatus.ERROR: "red", JobSetStatus.CANCELLED: "yellow"}.get(status)
    return f"[bold {style}]{status.value}[/]" if style else status.value
