"""Private processes on this machine: a ``redis-server`` and Celery workers.

Used by ``qjm demo`` and the benchmark when nothing is running yet, and by the tests, which
always start their own. Everything started here is stopped by ``LocalCluster.close()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from ..config import worker_env

if TYPE_CHECKING:
    from ..emulator.faults import Faults

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def redis_answers(url: str) -> bool:
    """Whether a usable Redis answers at ``url``: one that refuses (a wrong password, writes
    disabled after a failed snapshot) counts as none."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class RedisProcess:
    """``redis-server`` on a free port in its own directory; can be killed and restarted.

    Loopback only by default; ``bind`` (addresses, space-separated) is where other hosts reach it, and
    ``password`` makes it require one, as a shared Redis must; ``url`` never carries the password
    (give it to qjm processes in ``QJM_REDIS_PASSWORD``), ``client()`` logs in with it."""

    def __init__(self, appendonly: bool = False, port: int | None = None, bind: str | None = None,
                 password: str | None = None, config: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="qjm-redis-")
        self.appendonly = appendonly
        self.bind = bind or "127.0.0.1"
        if password is not None and (not password or any(c in password for c in '"\\\n\r')):
            raise ValueError("the password must be non-empty, without quotes, backslashes or newlines")
        self.password = password
        self.config = dict(config or {})  # more redis.conf directives, e.g. {"proto-max-bulk-len": "1mb"}
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """The first bound address: where ``url`` points."""
        return self.bind.split()[0]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _authed_url(self) -> str:
        from ..config import with_password

        return with_password(self.url, self.password) if self.password else self.url

    def start(self) -> RedisProcess:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        args = ["redis-server", "--port", str(self.port), "--bind", *self.bind.split(), "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--maxmemory-policy", "noeviction"]
        for directive, value in self.config.items():
            args += [f"--{directive}", value]
        stdin = None
        if self.password:
            # Read as a config file from stdin ("-"), so the password is in no command line.
            args.insert(1, "-")
            stdin = subprocess.PIPE
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.password:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f'requirepass "{self.password}"\n'.encode())
            self.proc.stdin.close()
        wait_for(lambda: redis_answers(self._authed_url()), 10, "redis-server to answer")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, password=self.password)


def process_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a qjm process pointed at ``redis_url``."""
    env = dict(os.environ)
    env.update({"QJM_REDIS_URL": redis_url, "C_FORCE_ROOT": "1", "PYTHONWARNINGS": "ignore"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("QJM_BROKER_URL", None)
    env.pop("QJM_RESULT_BACKEND_URL", None)
    env.update(extra)
    return env


class WorkerProcess:
    """``celery -A workers.app worker`` as a real process with a prefork pool.

    ``prefix`` runs it through another command that then execs it (``ip netns exec NAME`` puts it
    on another network host), so ``proc`` is still the worker and its process group the whole worker."""

    _count = 0

    def __init__(self, redis_url: str, concurrency: int = 2, queues: str | None = None,
                 extra_args: list[str] | None = None, prefix: list[str] | None = None, **env: str) -> None:
        WorkerProcess._count += 1
        self.name = f"qjm{WorkerProcess._count}-{os.getpid()}@localhost"
        self.log = tempfile.NamedTemporaryFile(prefix="qjm-worker-", suffix=".log", delete=False).name
        args = [*(prefix or []), sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-l", "info",
                "-n", self.name, "--concurrency", str(concurrency), "--without-mingle", "--without-gossip",
                *(extra_args or [])]
        if queues:
            args += ["-Q", queues]
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=worker_env(process_env(redis_url, **env)), stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> WorkerProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.output()}")
            return b"ready." in Path(self.log).read_bytes()

        wait_for(ready, timeout, f"worker {self.name} to be ready", interval=0.1)
        return self

    def output(self) -> str:
        return Path(self.log).read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group without waiting (SIGSTOP/SIGCONT freeze and thaw
        the worker, as a host cut off and back); False if it has already exited."""
        if self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def is_ready(self) -> bool:
        """Whether the worker has said it is ready (without waiting, unlike ``wait_ready``)."""
        return self.proc.poll() is None and b"ready." in Path(self.log).read_bytes()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (main process and pool), like losing the host."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(30)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self._fh.close()


def workers_answering(redis_url: str, timeout: float = 1.0) -> int:
    """How many qjm workers answer a Celery ping on this broker."""
    from ..config import Settings
    from ..engine.dispatch import client_app

    try:
        return len(client_app(Settings(redis_url=redis_url)).control.ping(timeout=timeout) or [])
    except Exception:  # noqa: BLE001 - no broker means no workers
        return 0


class LocalCluster:
    """Whatever is missing to run job sets here: Redis if none answers, workers if none listen."""

    def __init__(self, redis_url: str, concurrency: int | None = None) -> None:
        self.redis_url = redis_url
        self.concurrency = concurrency or os.cpu_count() or 2
        self.redis: RedisProcess | None = None
        self.workers: list[WorkerProcess] = []

    def __enter__(self) -> LocalCluster:
        if not redis_answers(self.redis_url):
            self.redis = RedisProcess().start()
            self.redis_url = self.redis.url
        if not workers_answering(self.redis_url):
            self.workers.append(WorkerProcess(self.redis_url, concurrency=self.concurrency).wait_ready())
        return self

    @property
    def started(self) -> list[str]:
        return ([f"redis-server on {self.redis_url}"] if self.redis else []) + \
               [f"worker {w.name} ({self.concurrency} processes)" for w in self.workers]

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        if self.redis:
            self.redis.stop()

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmulatorProcess:
    """``python -m qjm.emulator`` as its own process, as a user would run it next to the workers."""

    def __init__(self, faults: Faults | None = None, *, host: str = "127.0.0.1", **knobs: Any) -> None:
        """The knobs as one ``Faults`` or as its keyword arguments (``job_seconds`` defaults to 1 s here).
        ``host`` is the one address it listens on (loopback unless workers on other hosts need it)."""
        from ..emulator.faults import Faults

        if faults is not None and knobs:
            raise TypeError(f"give faults or its knobs ({', '.join(knobs)}), not both")
        self.port = free_port()
        self.faults = faults or Faults(**{"job_seconds": 1.0, **knobs})
        self.host = host
        args = [sys.executable, "-m", "qjm.emulator", "--host", host, "--port", str(self.port),
                *self.faults.to_argv()]
        self.log = tempfile.NamedTemporaryFile(prefix="qjm-emulator-", suffix=".log", delete=False).name
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=process_env("redis://unused"), stdout=self._fh,
                                     stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stats(self) -> dict:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/emulator/stats", timeout=5) as resp:
            return json.load(resp)

    def wait_ready(self, timeout: float = 60) -> EmulatorProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited:\n{Path(self.log).read_text(errors='replace')}")
            try:
                return bool(self.stats())
            except OSError:
                return False

        try:
            wait_for(ready, timeout, "the emulator to answer", interval=0.1)
        except BaseException:
            self.stop()  # nobody else holds it: an emulator that never answered is not left running
            raise
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
