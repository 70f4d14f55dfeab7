"""``qjm``: submit, follow and fetch job sets from a shell, and start qjm's processes.

The job-set commands are thin calls into ``JobManager``/``ManagedJobSet``; the process commands
(``worker``, ``flower``, ``metrics``, ``emulator``, ``demo``) start the right program with qjm's
app and settings, so deployment files only ever say ``qjm <command>``. Mistakes a user can make
(unknown id, unreadable file, Redis down) print one line and exit 1, never a traceback.

Settings are made once per invocation (``--redis-url`` overrides ``QJM_REDIS_URL``) and travel in
typer's context object; a program qjm execs gets them through its own environment, never by
changing ours. Every line printed passes through ``Settings.redact``, so no password is shown.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from ..config import Settings, child_env, mask_url, worker_env
from ..errors import CircuitFileError, QJMError
from ..usage import cli as usage_cli
from . import cli_backends, cli_manage
from .cli_manage import job_set_id_arg, not_done

if TYPE_CHECKING:

    from ..client.manager import JobManager

#: The Celery app every worker and Flower load (``celery -A``).
APP = "workers.app"
#: Imported into every worker so it records latency metrics (see ``qjm.ops.metrics``).
WORKER_INCLUDES = "qjm.ops.metrics"
FLOWER_USER_ENV = "QJM_FLOWER_USER"
FLOWER_PASSWORD_ENV = "QJM_FLOWER_PASSWORD"
#: Flower reads its options from FLOWER_<OPTION> too: credentials go there, not into a command line `ps` shows.
FLOWER_AUTH_CHILD_ENV = "FLOWER_BASIC_AUTH"
EXIT_INTERRUPTED = 130

app = typer.Typer(name="qjm", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Run Qiskit circuits as job sets on qjm's Celery workers; state lives in Redis.")
out = Console()
err = Console(stderr=True, soft_wrap=True)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


# ----------------------------------------------------------------------------- helpers
@dataclass
class Invocation:
    """What one ``qjm`` command runs with (typer's context object), kept by ``main`` for its errors."""

    settings: Settings | None = None
    #: ``--redis-url`` as given, for the environment of a program qjm execs.
    redis_url_option: str | None = None

    def child_env(self) -> dict[str, str]:
        """The environment of ``qjm worker``/``qjm flower``'s program: ours, with --redis-url in it."""
        return child_env(**({"QJM_REDIS_URL": self.redis_url_option} if self.redis_url_option else {}))


@app.callback()
def _options(ctx: typer.Context, redis_url: str | None = typer.Option(
        None, "--redis-url", metavar="URL",
        help="Redis holding job-set state (and the broker unless QJM_BROKER_URL is set); default "
             "QJM_REDIS_URL. Put the password in QJM_REDIS_PASSWORD(_FILE), not here: `ps` shows arguments.")) -> None:
    """qjm's settings come from the environment; --redis-url overrides QJM_REDIS_URL."""
    inv = ctx.ensure_object(Invocation)
    inv.redis_url_option = redis_url or None
    inv.settings = Settings(redis_url=redis_url) if redis_url else Settings()


def _cfg(ctx: typer.Context) -> Settings:
    inv = ctx.ensure_object(Invocation)
    if inv.settings is None:
        inv.settings = Settings()
    return inv.settings


def _manager(ctx: typer.Context) -> JobManager:
    from ..client.manager import JobManager

    return JobManager(redis_url=_cfg(ctx).redis_url)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


# ----------------------------------------------------------------------------- job sets
@app.command()
def run(ctx: typer.Context, files: list[Path] = typer.Argument(..., help="QPY or OpenQASM 2/3 files; their circuits in order."),
        backend: str = typer.Option(..., "--backend", "-b", help="e.g. fake_manila, aer_simulator, ibm_torino"),
        name: str | None = typer.Option(None, "--name", help="job-set name, for `qjm list --name`"),
        max_per_job: int | None = typer.Option(None, "--max-per-job", help="experiments per job"),
        shots: int = typer.Option(1024, "--shots"),
        tag: list[str] = typer.Option([], "--tag", help="job tag (repeatable)"),
        optimization_level: int = typer.Option(2, "--optimization-level", "-O"),
        seed: int | None = typer.Option(None, "--seed", help="seed_simulator for local simulators"),
        memory: bool = typer.Option(False, "--memory", help="keep per-shot outcomes")) -> None:
    """Submit circuits as one job set; prints its id at once (progress: `qjm watch ID`)."""
    from ..formats.circuit_files import load_circuits

    with not_done("No job set was made."):
        circuits = [qc for f in files for qc in load_circuits(f)]
        js = _manager(ctx).run(circuits, backend=backend, name=name, max_experiments_per_job=max_per_job,
                               job_tags=tag or None, shots=shots, optimization_level=optimization_level,
                               seed_simulator=seed, memory=memory)
    print(js.job_set_id(), flush=True)
    err.print(f"{len(circuits)} circuits in {len(js.record().job_bounds)} jobs on {backend}")


@app.command()
def status(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
           brief: bool = typer.Option(False, "--brief", help="totals only, no block per job")) -> None:
    """Print the job set's report: totals by status, then one block per job."""
    print(_cfg(ctx).redact(_manager(ctx).retrieve_job_set(job_set_id).report(detailed=not brief)))


@app.command()
def watch(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
          timeout: float | None = typer.Option(None, "--timeout", help="give up after this many seconds")) -> None:
    """Live progress of the set and its jobs until it is final (exit 0 only if DONE).

    Ctrl-C stops watching; the job set keeps running.
    """
    from ..lifecycle import JobSetStatus
    from .progress import REFRESH_SECONDS
    from .progress import watch as show

    js = _manager(ctx).retrieve_job_set(job_set_id)
    err.print(f"watching job set {job_set_id} (Ctrl-C stops watching; the set keeps running)", highlight=False)
    try:
        from ..executors import is_local

        remote = not is_local(js.backend_name())
        final = show(js.snapshots(timeout, every=REFRESH_SECONDS, jobs=True), console=out,
                     qpu=js.usage if remote else None)
    except KeyboardInterrupt:
        err.print(f"stopped watching; job set {job_set_id} keeps running (`qjm watch {job_set_id}` to resume)",
                  highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if final is not JobSetStatus.DONE:
        err.print(f"job set {job_set_id} ended {final.value}: `qjm status {job_set_id}` says why", highlight=False)
        raise typer.Exit(1)


@app.command()
def results(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg),
            out_file: Path | None = typer.Option(None, "--out", "-o", help="write the JSON here, not stdout"),
            partial: bool = typer.Option(False, "--partial", help="a set with failed jobs: give the rest"),
            timeout: float | None = typer.Option(None, "--timeout", help="seconds to wait for the set")) -> None:
    """Every experiment's results as JSON (waits for the set to be final): counts per circuit;
    for pubs, per parameter index the counts per register, or evs and stds."""
    from ..client import export

    jm = _manager(ctx)
    js = jm.retrieve_job_set(job_set_id)
    res = js.results(timeout=timeout, partial=partial)
    experiments = export.experiments(res, jm.store.names(job_set_id))
    doc = {"job_set_id": job_set_id, "status": js.status().value, "backend": js.backend_name(),
           "experiments": experiments}
    text = json.dumps(doc, indent=1)
    if out_file is None:
        print(text)
        return
    try:
        out_file.write_text(text + "\n")
    except OSError as exc:
        raise CircuitFileError(f"Cannot write {out_file}: {exc.strerror or exc}.") from None
    err.print(f"wrote {len(experiments)} experiments to {out_file}", highlight=False)


@app.command()
def cancel(ctx: typer.Context, job_set_id: str = typer.Argument(..., metavar="ID", callback=job_set_id_arg)) -> None:
    """Cancel every job of the set that is not final yet; finished jobs keep their results."""
    statuses = _manager(ctx).retrieve_job_set(job_set_id).cancel()
    summary = ", ".join(f"{s.value} {statuses.count(s)}" for s in dict.fromkeys(statuses))
    print(f"cancel requested for {job_set_id}: {summary}")


cli_manage.register(app, _manager, _when, out, err)
cli_backends.register(app, _manager, out, err)
usage_cli.register(app, _manager)


# ----------------------------------------------------------------------------- processes
def _exec(args: list[str], env: dict[str, str]) -> None:
    """Become the program (signals from honcho, Docker or Kubernetes then reach it directly)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(args[0], args, env)


def worker_argv(extra: list[str]) -> list[str]:
    """``celery -A workers.app worker`` with qjm's metrics listeners added to any ``-I``."""
    extra = list(extra)
    for k, a in enumerate(extra):
        if a in ("-I", "--include") and k + 1 < len(extra):
            extra[k + 1] += f",{WORKER_INCLUDES}"
            break
        if a.startswith("--include="):
            extra[k] += f",{WORKER_INCLUDES}"
            break
    else:
        extra = ["-I", WORKER_INCLUDES, *extra]
    return [sys.executable, "-m", "celery", "-A", APP, "worker", *extra]


def flower_argv(extra: list[str]) -> list[str]:
    """``celery -A workers.app flower``; credentials go in its environment (``flower_env``)."""
    return [sys.executable, "-m", "celery", "-A", APP, "flower", *extra]


def _auth_in_args(extra: list[str]) -> bool:
    """Flower's own auth options given on the command line (basic or OAuth)."""
    return any(a.startswith(("--basic-auth", "--basic_auth", "--auth")) for a in extra)


def flower_env(cfg: Settings, base: dict[str, str], no_auth: bool = False, extra: list[str] | None = None) -> dict[str, str]:
    """Flower's environment with its basic auth from ``cfg``; refuses to go without auth unless ``no_auth``.

    Flower shows every task and can revoke them, so an open Flower is a choice made on purpose.
    """
    user, password = cfg.flower_user, cfg.flower_password
    if bool(user) != bool(password):
        raise QJMError(f"Set both {FLOWER_USER_ENV} and {FLOWER_PASSWORD_ENV} for Flower's basic auth, or neither.")
    env = dict(base)
    if user and password:
        if "," in user + password or ":" in user:
            raise QJMError(f"{FLOWER_USER_ENV} may not contain ':' or ',' and {FLOWER_PASSWORD_ENV} may not "
                           "contain ',' (Flower splits its credentials on them).")
        env[FLOWER_AUTH_CHILD_ENV] = f"{user}:{password}"
    elif not (no_auth or env.get(FLOWER_AUTH_CHILD_ENV) or _auth_in_args(extra or [])):
        raise QJMError(f"Flower needs credentials: set {FLOWER_USER_ENV} and {FLOWER_PASSWORD_ENV}, "
                       "or pass --no-auth to run it open (on a loopback address only).")
    return env


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def worker(ctx: typer.Context) -> None:
    """Start a Celery worker of qjm's app; every option is celery worker's (`qjm worker --help`)."""
    _cfg(ctx)  # a bad setting (rediss:// without ssl_cert_reqs, unreadable password file) stops here, in one line
    _exec(worker_argv(ctx.args), worker_env(ctx.ensure_object(Invocation).child_env()))


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def flower(ctx: typer.Context, no_auth: bool = typer.Option(
        False, "--no-auth", help="start without basic auth when QJM_FLOWER_USER/PASSWORD are unset")) -> None:
    """Start Flower on qjm's broker with basic auth from QJM_FLOWER_USER and QJM_FLOWER_PASSWORD.

    Without them it refuses to start unless --no-auth says an open Flower is intended.
    """
    cfg = _cfg(ctx)
    env = flower_env(cfg, ctx.ensure_object(Invocation).child_env(), no_auth=no_auth, extra=ctx.args)
    if not (env.get(FLOWER_AUTH_CHILD_ENV) or _auth_in_args(ctx.args)):
        err.print("warning: Flower starts without authentication (--no-auth): whoever reaches its port can "
                  "see and revoke tasks", highlight=False)
    _exec(flower_argv(ctx.args), env)


@app.command()
def metrics(ctx: typer.Context, port: int = typer.Option(9808, "--port", help="serve /metrics on this port"),
            host: str = typer.Option("0.0.0.0", "--host")) -> None:
    """Serve Prometheus metrics of job sets, jobs, remote slots and latency (read from Redis)."""
    from .metrics import serve

    cfg = _cfg(ctx)
    err.print(f"qjm metrics on http://{host}:{port}/metrics (Redis {mask_url(cfg.redis_url)})", highlight=False)
    try:
        serve(port=port, host=host, cfg=cfg)
    except KeyboardInterrupt:
        pass


@app.command()
def demo() -> None:
    """1000 random circuits on fake_manila; starts Redis and a worker if none are running."""
    from .demo import run_demo

    raise typer.Exit(run_demo())


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def emulator(ctx: typer.Context) -> None:
    """Run the local emulator of the IBM Quantum Platform API; options are `python -m qjm.emulator`'s
    (`qjm emulator --help`: --port, --job-seconds, --pending-limit, --batch-ttl, --fail-every, ...)."""
    try:
        from ..emulator.__main__ import main
    except ImportError:
        raise QJMError("The IBM Quantum emulator is not part of this installation.") from None
    try:
        main(ctx.args, prog="qjm emulator")
    except KeyboardInterrupt:
        pass


# ----------------------------------------------------------------------------- entry point
def _user_error(exc: BaseException, cfg: Settings | None) -> str | None:
    """The one line to print for a mistake the user can fix, or None for a bug (keep the traceback)."""
    import redis

    where = mask_url(cfg.redis_url) if cfg else "QJM_REDIS_URL"
    # The store reports a refused password as unreachable Redis; say what to set instead.
    refused = exc.__cause__ if isinstance(exc, QJMError) else exc
    if isinstance(refused, redis.AuthenticationError) or (
            isinstance(refused, redis.ResponseError) and str(refused).startswith(("NOAUTH", "WRONGPASS"))):
        return (f"Redis at {where} refused the password ({refused}): set QJM_REDIS_PASSWORD or "
                "QJM_REDIS_PASSWORD_FILE to Redis's requirepass")
    if isinstance(exc, QJMError):  # with what the command did not do, if it says (``cli_manage.not_done``)
        return " ".join([str(exc), *getattr(exc, "__notes__", [])])
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"Cannot reach Redis at {where}: {exc}"
    if isinstance(exc, redis.RedisError):
        return f"Redis at {where} refused: {exc}"
    if isinstance(exc, (ValueError, OSError)) and "redis" in str(exc).lower():
        return f"Bad Redis URL {where!r}: {exc}"
    if isinstance(exc, OSError) and type(exc).__module__.startswith(("kombu", "amqp")):
        return f"Cannot reach the broker at {mask_url(cfg.broker) if cfg else 'QJM_BROKER_URL'}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Console entry point: typer for parsing, one line on stderr (exit 1) for user mistakes.

    Whatever is printed here (the line, or a bug's traceback) has every secret of the settings redacted.
    """
    inv = Invocation()
    try:
        app(args=argv, prog_name="qjm", standalone_mode=True, obj=inv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - sorted into user mistakes and bugs below
        line = _user_error(exc, inv.settings)
        redact = inv.settings.redact if inv.settings else (lambda text: text)
        if line is None:  # a bug: the traceback, with secrets redacted
            sys.stderr.write(redact(traceback.format_exc()))
            return 1
        err.print(f"error: {redact(line)}", highlight=False, markup=False, soft_wrap=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
