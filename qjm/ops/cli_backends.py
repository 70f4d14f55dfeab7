"""``qjm backends``: what qjm can run on, as ``JobManager.backends`` sees it (``qjm.ops.cli`` registers it).

One line per backend: its qubits, whether it is online, the service's queue, qjm's own jobs in
flight there and qjm's pending-job limit; ``--json`` gives the ``BackendInfo`` records instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..backends import BackendInfo
    from ..client.manager import JobManager


def status_text(info: BackendInfo) -> str:
    return "online" if info.operational else info.status_message


def table(infos: list[BackendInfo]) -> Table:
    out = Table("name", "qubits", "status", "queue", "qjm in flight", "limit")
    for b in infos:
        # A local backend has no queue and no limit: its jobs run in the workers.
        out.add_row(b.name, str(b.num_qubits), status_text(b), "-" if b.local else str(b.pending_jobs),
                    "-" if b.local else str(b.in_flight), "-" if b.job_limit is None else str(b.job_limit))
    return out


def register(app: typer.Typer, manager: Callable[[typer.Context], JobManager], out: Console, err: Console) -> None:
    @app.command()
    def backends(ctx: typer.Context,
                 min_qubits: int | None = typer.Option(None, "--min-qubits", metavar="N", help="at least N qubits"),
                 operational: bool = typer.Option(False, "--operational", help="only backends that are online"),
                 as_json: bool = typer.Option(False, "--json", help="the records as JSON, not a table")) -> None:
        """Backends qjm can run on: local simulators and fake devices, and the IBM Quantum account's
        devices (if one is configured) with their queue and qjm's own jobs in flight there."""
        found = manager(ctx).backends(min_num_qubits=min_qubits, operational=True if operational else None)
        if as_json:
            print(json.dumps([b.to_json() for b in found], indent=1))
            return
        if not found:
            err.print("no backends match")
            return
        (out if out.is_terminal else Console(width=200)).print(table(found))
