"""``qjm rerun|rename|tag|delete|list``: managing job sets from a shell (``qjm.ops.cli`` registers them).

Each command is a thin call into ``JobManager``/``ManagedJobSet``; mistakes print one line
through ``qjm.ops.cli.main`` like every other command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..client.manager import JobManager

#: ``qjm list`` shows at most this many sets unless told otherwise.
DEFAULT_LIST_LIMIT = 50


def job_set_id_arg(value: str | None) -> str | None:
    """Typer's callback for every ``ID`` argument: the id as qjm spells it (upper case taken),
    or one line saying what an id looks like (``store.keys.job_set_id``)."""
    from ..store import keys

    return None if value is None else keys.job_set_id(value)


@contextmanager
def not_done(what: str) -> Iterator[None]:
    """A refused call (``InvalidInputError``, raised before anything is written) is printed with
    ``what`` it did not do, e.g. "No job set was made." (``qjm.ops.cli.main`` prints the notes)."""
    try:
        yield
    except InvalidInputError as exc:
        exc.__notes__ = [*getattr(exc, "__notes__", []), what]
        raise


def register(app: typer.Typer, manager: Callable[[typer.Context], JobManager], when: Callable[[float | None], str],
             out: Console, err: Console) -> None:
    @app.command()
    def rerun(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg)) -> None:
        """Run again the jobs of a finished set that ended ERROR or CANCELLED (same set id)."""
        jobs = manager(ctx).retrieve_job_set(job_set_id).rerun_failed()
        if not jobs:
            print(f"no failed or cancelled jobs in {job_set_id}: nothing to re-run")
            return
        print(f"re-running {len(jobs)} job(s) of {job_set_id}: " + ", ".join(
            f"{j.index} (attempt {j.attempt()})" for j in jobs))

    @app.command()
    def rename(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
               name: str = typer.Argument(..., metavar="NAME")) -> None:
        """Give the set a new name."""
        js = manager(ctx).retrieve_job_set(job_set_id)
        with not_done(f"{job_set_id} was not renamed."):
            js.update_name(name)
        print(f"{job_set_id} is now named {name!r}")

    @app.command()
    def tag(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
            add: list[str] = typer.Option([], "--add", metavar="TAG", help="add this tag (repeatable)"),
            remove: list[str] = typer.Option([], "--remove", metavar="TAG", help="remove this tag (repeatable)")) -> None:
        """Add and remove the set's tags (on its remote jobs too); without options, show them."""
        js = manager(ctx).retrieve_job_set(job_set_id)
        with not_done(f"The tags of {job_set_id} were not changed."):
            tags = js.update_tags(additional_tags=add, removal_tags=remove) if add or remove else js.tags()
        print(f"{job_set_id} tags: " + (", ".join(tags) if tags else "(none)"))

    @app.command()
    def delete(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
               yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
        """Delete the set (cancelling it first if it runs): its results are gone for good."""
        jm = manager(ctx)
        rec = jm.retrieve_job_set(job_set_id).record()
        if not yes:
            what = f"{job_set_id} ({rec.name or 'unnamed'}, {rec.status.value}, {rec.n_jobs} jobs)"
            if not typer.confirm(f"Delete job set {what} and its results?", default=False, err=True):
                err.print("not deleted")
                raise typer.Exit(1)
        jm.delete_job_set(job_set_id)
        print(f"deleted {job_set_id}")

    @app.command("list")
    def list_(ctx: typer.Context, name: str | None = typer.Option(None, "--name"),
              tag: list[str] = typer.Option([], "--tag", help="only sets with all these tags (repeatable)"),
              backend: str | None = typer.Option(None, "--backend"),
              status: str | None = typer.Option(None, "--status", help="RUNNING, DONE, ERROR or CANCELLED"),
              limit: int = typer.Option(DEFAULT_LIST_LIMIT, "--limit", help="newest N sets")) -> None:
        """Job sets, newest first."""
        from ..lifecycle import JobStatus

        sets = manager(ctx).job_sets(name=name, tags=tag or None, backend=backend, status=status, limit=limit)
        table = Table("ID", "name", "backend", "status", "jobs done", "experiments", "created (UTC)", "tags")
        for js in sets:
            rec = js.record()
            statuses = js.statuses()
            table.add_row(rec.id, rec.name or "", rec.backend, rec.status.value,
                          f"{statuses.count(JobStatus.DONE)}/{len(statuses)}", str(rec.n_experiments),
                          when(rec.created), ",".join(rec.tags))
        if not sets:
            err.print("no job sets" + (" match" if name or tag or backend or status else ""))
            return
        # Piped output keeps whole ids (rich would shrink the table to 80 columns).
        (out if out.is_terminal else Console(width=200)).print(table)
