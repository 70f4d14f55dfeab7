"""No password leaks, and Redis works behind a password and TLS: real ``qjm`` commands, real servers.

The password is a distinctive string, so finding it anywhere (stdout, stderr, a worker's or Flower's
log, Flower's pages and API, the metrics) is a leak, whatever the context.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qjm import JobManager, JobSetStatus, QJMError
from qjm.config import Settings, SettingsError, mask_url
from qjm.engine.tasks import celery_settings
from qjm.ops import cli

from .circuits import basis_state
from .ops_fixtures import QJM, Proc, SecureRedis, env_for, http_get, qjm, redis_supports_tls
from .procs import free_port, wait_for

PASSWORD = "Zq7-leakcheck-4f9e2b"
WRONG = "wrong-leakcheck-77c1aa"
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, WRONG):
            assert secret not in text, f"{secret!r} leaked in:\n{text}"


def one_error_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def secure_redis():
    server = SecureRedis(PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def bell(tmp_path: Path) -> Path:
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    return path


# ----------------------------------------------------------------------------- settings, in process
def test_mask_url_hides_only_the_password():
    assert mask_url(f"redis://:{PASSWORD}@10.0.0.5:6379/0") == "redis://:**@10.0.0.5:6379/0"
    assert mask_url(f"rediss://qjm:{PASSWORD}@h:6380/1?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem") == \
        "rediss://qjm:**@h:6380/1?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    assert mask_url(f"redis://h/0?password={PASSWORD}") == "redis://h/0?password=**"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert PASSWORD not in mask_url(f"redis://:{PASSWORD}@[::1/0")  # unparseable: hidden whole


def test_password_from_environment_or_file_reaches_every_url(monkeypatch, tmp_path):
    for var in ("QJM_REDIS_PASSWORD", "QJM_REDIS_PASSWORD_FILE", "QJM_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QJM_REDIS_URL", "redis://redis.internal:6379/0")
    monkeypatch.setenv("QJM_REDIS_PASSWORD", "p@ss/w:rd#1")  # quoted into the URL, unquoted by redis-py
    cfg = Settings()
    assert cfg.redis_url == "redis://:p%40ss%2Fw%3Ard%231@redis.internal:6379/0" and cfg.broker == cfg.redis_url
    assert "p@ss" not in repr(cfg) and "p%40ss" not in repr(cfg) and "redis://:**@redis.internal" in repr(cfg)
    # A broker on the same server shares the password; a broker elsewhere never gets it.
    monkeypatch.setenv("QJM_BROKER_URL", "redis://redis.internal:6379/1")
    assert Settings().broker == "redis://:p%40ss%2Fw%3Ard%231@redis.internal:6379/1"
    monkeypatch.setenv("QJM_BROKER_URL", "redis://other-host:6379/0")
    assert Settings().broker == "redis://other-host:6379/0"
    # A password in the URL wins.
    assert Settings(redis_url="redis://:own@h:1/0").redis_url == "redis://:own@h:1/0"

    secret_file = tmp_path / "redis-password"
    secret_file.write_text(PASSWORD + "\n")
    monkeypatch.delenv("QJM_REDIS_PASSWORD")
    monkeypatch.delenv("QJM_BROKER_URL")
    monkeypatch.setenv("QJM_REDIS_PASSWORD_FILE", str(secret_file))
    assert Settings().redis_url == f"redis://:{PASSWORD}@redis.internal:6379/0"
    monkeypatch.setenv("QJM_REDIS_PASSWORD", "x")
    with pytest.raises(SettingsError, match="not both"):
        Settings()
    monkeypatch.delenv("QJM_REDIS_PASSWORD")
    monkeypatch.setenv("QJM_REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(QJMError, match="Cannot read QJM_REDIS_PASSWORD_FILE"):
        Settings()


def test_rediss_needs_ssl_cert_reqs_and_gives_celery_its_tls_options(monkeypatch):
    monkeypatch.delenv("QJM_REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("QJM_REDIS_PASSWORD_FILE", raising=False)
    with pytest.raises(QJMError, match=r"without ssl_cert_reqs: add \?ssl_cert_reqs=required") as caught:
        Settings(redis_url=f"rediss://:{PASSWORD}@h:6380/0")
    assert PASSWORD not in str(caught.value)
    with pytest.raises(QJMError, match="ssl_cert_reqs=maybe"):
        Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=maybe")
    cfg = Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem")
    import ssl

    assert celery_settings(cfg)["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.pem"}
    assert "broker_use_ssl" not in celery_settings(Settings(redis_url="redis://h:1/0"))


def test_cli_passes_settings_to_children_without_touching_its_environment(monkeypatch):
    """--redis-url and Flower's credentials reach the exec'd program's environment only."""
    monkeypatch.delenv("QJM_REDIS_PASSWORD", raising=False)
    monkeypatch.delenv("QJM_REDIS_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("QJM_FLOWER_USER", "ops")
    monkeypatch.setenv("QJM_FLOWER_PASSWORD", PASSWORD)
    before = dict(os.environ)
    launched: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli, "_exec", lambda argv, env: launched.append((argv, env)))
    url = "redis://127.0.0.1:7777/3"
    assert cli.main(["--redis-url", url, "worker", "-Q", "qjm.cpu"]) == 0
    assert cli.main(["--redis-url", url, "flower", "--port=1"]) == 0
    (w_argv, w_env), (f_argv, f_env) = launched
    assert w_env["QJM_REDIS_URL"] == url and f_env["QJM_REDIS_URL"] == url
    assert f_env[cli.FLOWER_AUTH_CHILD_ENV] == f"ops:{PASSWORD}"
    assert_no_secret(" ".join(w_argv), " ".join(f_argv))  # nothing for `ps` to show
    assert dict(os.environ) == before


# ----------------------------------------------------------------------------- real commands
def test_no_command_shows_the_password(secure_redis, bell, tmp_path):
    good = env_for(secure_redis.url())
    wrong = env_for(secure_redis.url(WRONG))
    missing = env_for(secure_redis.url(None))  # Redis wants a password, none is given
    dead = env_for(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0")
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASSWORD + "\n")
    from_file = env_for(secure_redis.url(None), QJM_REDIS_PASSWORD_FILE=str(secret_file))

    run = qjm("run", str(bell), "-b", "aer_simulator", "--name", "leakcheck", env=from_file)
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    done = {"run": run}
    done["status"] = qjm("status", sid, env=good)
    assert done["status"].returncode == 0 and f"ID: {sid}" in done["status"].stdout
    done["list"] = qjm("list", "--name", "leakcheck", env=good)
    assert sid in done["list"].stdout
    done["list --redis-url"] = qjm("--redis-url", secure_redis.url(), "list", env=env_for("redis://127.0.0.1:1/0"))
    assert sid in done["list --redis-url"].stdout

    cases = {
        "status, wrong password": (["status", sid], wrong, ["redis://:**@127.0.0.1"]),
        "list, wrong password": (["list"], wrong, []),
        "run, wrong password": (["run", str(bell), "-b", "aer_simulator"], wrong, []),
        "list, no password": (["list"], missing, ["QJM_REDIS_PASSWORD"]),
        "status, unreachable": (["status", sid], dead, ["Cannot reach Redis", "redis://:**@127.0.0.1"]),
        "run, unreachable": (["run", str(bell), "-b", "aer_simulator"], dead, ["Cannot reach Redis"]),
        "list, unreachable, --redis-url": (["--redis-url", dead["QJM_REDIS_URL"], "list"], good, ["Cannot reach"]),
    }
    procs = {k: subprocess.Popen([QJM, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (args, e, _) in cases.items()}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        done[k] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
        one_error_line(done[k], *cases[k][2])
    for k, d in done.items():
        assert "Traceback" not in d.stderr, k
        assert_no_secret(d.stdout, d.stderr)


@pytest.fixture(scope="module")
def watched(secure_redis):
    """A worker, Flower and qjm metrics on the password-protected Redis; one job set run through them."""
    url = secure_redis.url()
    started: list[Proc] = []
    try:
        worker = Proc([QJM, "worker", "-l", "info", "-n", "leakcheck@localhost", "--concurrency", "1",
                       "--without-mingle", "--without-gossip"], env_for(url), "worker-secure")
        started.append(worker)
        flower_port, metrics_port = free_port(), free_port()
        flower_env = env_for(url, QJM_FLOWER_USER="ops", QJM_FLOWER_PASSWORD="flower-pw")
        started.append(Proc([QJM, "flower", f"--port={flower_port}", "--address=127.0.0.1"], flower_env,
                            "flower-secure"))
        started.append(Proc([QJM, "metrics", "--port", str(metrics_port), "--host", "127.0.0.1"], env_for(url),
                            "metrics-secure"))
        worker.wait_output("ready.")
        base = f"http://127.0.0.1:{flower_port}"
        wait_for(lambda: "leakcheck@localhost" in http_get(f"{base}/workers?json=1", "ops", "flower-pw")[1], 180,
                 "Flower to hear the worker", interval=0.3)
        js = JobManager(url).run([basis_state(k) for k in range(3)], backend="aer_simulator",
                                 max_experiments_per_job=2, shots=16)
        assert js.wait(timeout=120) is JobSetStatus.DONE
        yield started, base, f"http://127.0.0.1:{metrics_port}/metrics", js.job_set_id()
    finally:
        for p in reversed(started):
            p.stop()


def test_worker_flower_and_metrics_show_no_password(watched):
    (worker, flower, metrics), base, metrics_url, sid = watched
    # The banner names the broker, masked by Celery.
    assert "redis://:**@127.0.0.1" in worker.output()
    seen = {name: http_get(f"{base}{path}", "ops", "flower-pw", timeout=30)
            for name, path in {"workers api": "/api/workers?refresh=1", "tasks api": "/api/tasks?limit=100",
                               "broker page": "/broker", "workers page": "/workers",
                               "worker page": "/worker/leakcheck@localhost"}.items()}
    for name, (status, body) in seen.items():
        assert status == 200, (name, body[:500])
        assert_no_secret(body)
    assert sid in seen["tasks api"][1], "the tasks are there, with the set's id as argument"
    status, scraped = http_get(metrics_url)
    assert status == 200 and "qjm_up 1.0" in scraped
    assert "Redis redis://:**@127.0.0.1" in metrics.output()
    assert_no_secret(worker.output(), flower.output(), metrics.output(), scraped)


# ----------------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def tls_redis():
    if not redis_supports_tls():
        pytest.skip("this redis-server is built without TLS")
    server = SecureRedis(PASSWORD, tls=True).start()
    yield server
    server.stop()


def test_rediss_for_clients_and_workers(tls_redis, bell):
    url = tls_redis.url()
    assert url.startswith("rediss://") and "ssl_cert_reqs=required" in url
    # Without ssl_cert_reqs: a qjm error saying what to add, before Celery's bare ValueError.
    bare = qjm("list", env=env_for(tls_redis.url(query="")))
    line = one_error_line(bare, "ssl_cert_reqs", "ssl_ca_certs")
    assert "ValueError" not in line
    started = qjm("worker", env=env_for(tls_redis.url(query="")))
    one_error_line(started, "ssl_cert_reqs")
    # Plain redis:// to a TLS-only server fails, in one line.
    one_error_line(qjm("list", env=env_for(url.replace("rediss://", "redis://").split("?")[0])))

    worker = Proc([QJM, "worker", "-l", "info", "-n", "tls@localhost", "--concurrency", "1",
                   "--without-mingle", "--without-gossip"], env_for(url), "worker-tls")
    try:
        worker.wait_output("ready.")
        run = qjm("run", str(bell), "-b", "aer_simulator", "--shots", "64", "--seed", "1", env=env_for(url))
        assert run.returncode == 0, run.stderr
        js = JobManager(url).retrieve_job_set(run.stdout.strip())
        assert js.wait(timeout=120) is JobSetStatus.DONE
        counts = js.results().get_counts(0)
        assert set(counts) <= {"00", "11"} and sum(counts.values()) == 64
        listed = qjm("list", env=env_for(url))
        assert run.stdout.strip() in listed.stdout
        assert "rediss://:**@127.0.0.1" in worker.output()
        assert_no_secret(worker.output(), run.stdout, run.stderr, listed.stdout, listed.stderr)
    finally:
        worker.stop()

