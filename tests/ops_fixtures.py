"""Real processes for the operations tests: ``qjm`` commands, HTTP checks, headless Chromium.

Every process runs in its own session and is stopped (SIGTERM, then SIGKILL) by ``stop()``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from qjm.ops.cluster import ROOT, free_port, process_env, redis_answers, wait_for

BIN = Path(sys.executable).parent
QJM = str(BIN / "qjm")


def env_for(redis_url: str, **extra: str) -> dict[str, str]:
    """A qjm process's environment: this venv's commands first on PATH, pointed at ``redis_url``."""
    env = process_env(redis_url)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    for inherited in ("QJM_FLOWER_USER", "QJM_FLOWER_PASSWORD"):
        env.pop(inherited, None)
    env.update(extra)
    return env


def qjm(*args: str, env: dict[str, str], timeout: float = 180, cwd: Path | str = ROOT) -> subprocess.CompletedProcess:
    """Run one ``qjm`` command to completion."""
    return subprocess.run([QJM, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


class Proc:
    """A long-running command with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], name: str, cwd: Path | str = ROOT) -> None:
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"qjm-{name}-", suffix=".log")[1])
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_output(self, text: str, timeout: float = 180) -> None:
        def seen() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()}")
            return text in self.output()

        wait_for(seen, timeout, f"{self.name} to print {text!r}", interval=0.1)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM to the whole session (a worker's pool too), SIGKILL if it lingers."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:  # stragglers of the session (e.g. pool children) must not outlive the test
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._fh.close()


def qjm_worker(redis_url: str, name: str, *extra: str) -> Proc:
    args = [QJM, "worker", "-l", "info", "-n", f"{name}@localhost", "--concurrency", "1",
            "--without-mingle", "--without-gossip", *extra]
    w = Proc(args, env_for(redis_url), name)
    w.wait_output("ready.")
    return w


def http_get(url: str, user: str | None = None, password: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """Status and body of a GET (errors are answers too)."""
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def ensure_chromium() -> str:
    """Debian's chromium, installed on first use (CI machines start without it)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() != 0:
        raise RuntimeError("chromium is missing and installing it needs root: apt-get install -y chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("apt-get installed chromium but it is not on PATH")
    return path


def chromium(browser: str, url: str, *, dump_dom: bool = True, screenshot: Path | None = None) -> str:
    """Load ``url`` headless, let its scripts run for 10 s of virtual time, return the DOM."""
    profile = tempfile.mkdtemp(prefix="qjm-chromium-")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
            "--window-size=1400,900"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    try:
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120, start_new_session=True)
        return done.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class SecureRedis:
    """``redis-server --requirepass`` on a free loopback port; with ``tls=True`` it speaks only TLS,
    with a certificate of a CA made here by ``openssl`` (``ca`` is that CA's certificate)."""

    def __init__(self, password: str, tls: bool = False) -> None:
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="qjm-secure-redis-"))
        self.tls = tls
        self.ca = self.dir / "ca.crt"
        self.proc: subprocess.Popen | None = None

    def url(self, password: str | None = "", query: str | None = None) -> str:
        """The server's URL: with its password by default, ``None`` for none, or another password."""
        auth = "" if password is None else f":{password or self.password}@"
        scheme = "rediss" if self.tls else "redis"
        if query is None and self.tls:
            query = f"ssl_cert_reqs=required&ssl_ca_certs={self.ca}"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def _make_certificates(self) -> list[str]:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=qjm test CA",
                "-keyout", "ca.key", "-out", "ca.crt")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
                "-out", "server.csr")
        (self.dir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.dir / "server.crt"),
                "--tls-key-file", str(self.dir / "server.key"), "--tls-ca-cert-file", str(self.ca),
                "--tls-auth-clients", "no"]

    def start(self) -> SecureRedis:
        listen = self._make_certificates() if self.tls else ["--port", str(self.port)]
        args = ["redis-server", *listen, "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                "--appendonly", "no", "--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: redis_answers(self.url()), 10, "redis-server to answer")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_supports_tls() -> bool:
    """A redis-server built without TLS rejects ``tls-port`` as a bad directive; one with it exits
    because nothing is left to listen on."""
    done = subprocess.run(["redis-server", "--port", "0", "--tls-port", "0", "--save", ""],
                          capture_output=True, text=True, timeout=30)
    return "not listen anywhere" in done.stdout + done.stderr
