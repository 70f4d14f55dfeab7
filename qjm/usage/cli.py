"""``qjm usage [ID]`` and ``qjm budget ID SECONDS|none``: QPU time from a shell (``qjm.ops.cli`` registers them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from ..errors import InvalidInputError
from ..ops.cli_manage import job_set_id_arg
from .records import InstanceUsage, SetUsage

if TYPE_CHECKING:
    from ..client.manager import JobManager


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f} s"


def set_lines(job_set_id: str, usage: SetUsage) -> list[str]:
    lines = [f"job set {job_set_id}",
             f"  consumed : {_seconds(usage.consumed)}" + "".join(
                 f"\n    {backend}: {_seconds(seconds)}" for backend, seconds in sorted(usage.by_backend.items())),
             f"  reserved : {_seconds(usage.reserved)} (jobs posted, not final)",
             f"  estimate : {_seconds(usage.estimate)} (consumed + reserved + jobs not yet posted)"
             + (f"; {usage.unestimated} job(s) not yet estimated" if usage.unestimated else ""),
             f"  budget   : {_seconds(usage.budget)}"]
    if usage.budget is not None:
        lines.append(f"  remaining: {_seconds(usage.remaining)}")
    if usage.held:
        lines.append(f"  held     : {usage.held} job(s) waiting for QPU time (`qjm status {job_set_id}` says why)")
    return lines


def instance_lines(usage: InstanceUsage) -> list[str]:
    lines = [f"instance {usage.instance}, {usage.period} (UTC)",
             f"  consumed : {_seconds(usage.consumed)} (qjm's jobs)",
             f"  reserved : {_seconds(usage.reserved)}",
             f"  budget   : {_seconds(usage.budget)} (QJM_QPU_SECONDS_PER_MONTH)"]
    if usage.budget is not None:
        lines.append(f"  remaining: {_seconds(usage.remaining)}")
    if usage.service is not None:
        svc = usage.service
        lines.append(f"  service  : {_seconds(svc.get('usage_consumed_seconds'))} consumed of "
                     f"{_seconds(svc.get('usage_limit_seconds') or svc.get('usage_allocation_seconds'))}"
                     + (" - limit reached: jobs are held" if svc.get("usage_limit_reached") else ""))
    return lines


def parse_budget(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"A budget is a number of QPU seconds or 'none', not {text!r}.") from None


def register(app: typer.Typer, manager: Callable[[typer.Context], JobManager]) -> None:
    @app.command()
    def usage(ctx: typer.Context, job_set_id: str | None = typer.Argument(None, metavar="[ID]", callback=job_set_id_arg)) -> None:
        """QPU seconds of a job set (consumed, reserved, estimated, budget), or without ID of the
        instance this UTC month (qjm's charges, its budget and what is left, the service's figures)."""
        jm = manager(ctx)
        if job_set_id is None:
            print("\n".join(instance_lines(jm.usage())))
        else:
            print("\n".join(set_lines(job_set_id, jm.retrieve_job_set(job_set_id).usage())))

    @app.command()
    def budget(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
               seconds: str = typer.Argument(..., metavar="SECONDS|none")) -> None:
        """Set a job set's budget of QPU seconds ('none' lifts it): held jobs go on within it."""
        after = manager(ctx).retrieve_job_set(job_set_id).update_budget(parse_budget(seconds))
        print("\n".join(set_lines(job_set_id, after)))
