"""The deployment files agree with the code (app, queues, settings), and the Procfile really runs.

Everything a deployment needs to know is compared with its source here, so renaming a queue,
a setting or the app fails a test instead of silently stranding tasks in production.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from qjm import JobManager, JobSetStatus
from qjm.cli import APP, FLOWER_PASSWORD_ENV, FLOWER_USER_ENV
from qjm.cluster import redis_answers, workers_answering
from qjm.config import Settings
from qjm.tasks import CPU_QUEUE, IO_QUEUE, ROUTES

from .circuits import basis_state, expected
from .ops_fixtures import BIN, Proc, env_for, http_get
from .procs import ROOT, free_port, wait_for

DEPLOY = ROOT / "deploy"
QUEUES = {CPU_QUEUE, IO_QUEUE}
#: Every variable qjm's code reads (quoted names in its source: config, executors, Flower's credentials).
KNOWN_ENV = {name for src in [*(ROOT / "qjm").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
             for name in re.findall(r'"(QJM_[A-Z_]+)"', src.read_text())} | {FLOWER_USER_ENV, FLOWER_PASSWORD_ENV}
#: The settings every qjm process of one deployment must share.
SHARED_ENV = {"QJM_REDIS_URL", "QJM_TTL_SECONDS", "QJM_VISIBILITY_TIMEOUT", "QJM_MAX_POLL_INTERVAL",
              "QJM_MAX_PENDING_JOBS"}


# ----------------------------------------------------------------------------- reading the files
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def k8s(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def procfile() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def as_args(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def queues_of(args: list[str]) -> set[str]:
    for k, a in enumerate(args):
        if a in ("-Q", "--queues"):
            return set(args[k + 1].split(","))
    return set(QUEUES)  # no -Q: a worker consumes every queue of the app


def qjm_command(args: list[str]) -> str | None:
    """'worker', 'flower', ... for a command that runs qjm; None for anything else."""
    if args[:1] == ["qjm"]:
        return args[1]
    return None


def check_worker(args: list[str]) -> set[str]:
    """A worker command runs qjm's app and consumes only qjm's queues; returns them."""
    assert qjm_command(args) == "worker", f"workers are started by `qjm worker` (app {APP}): {args}"
    queues = queues_of(args)
    assert queues and queues <= QUEUES, f"unknown queues in {args}"
    return queues


def check_redis(args: list[str]) -> None:
    joined = " ".join(args)
    assert re.search(r"--appendonly\s+yes", joined), f"Redis without append-only persistence: {joined}"
    assert re.search(r"--maxmemory-policy\s+noeviction", joined), f"Redis may evict queued tasks: {joined}"


# ----------------------------------------------------------------------------- code side
def test_the_app_and_queues_the_files_name_exist():
    from workers.app import app

    assert APP == "workers.app"
    assert set(ROUTES.values()) == QUEUES
    assert {q.name for q in app.conf.task_queues} == QUEUES
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event


# ----------------------------------------------------------------------------- compose
def test_compose_services_agree_with_the_code():
    doc = compose()
    services = doc["services"]
    check_redis(as_args(services["redis"]["command"]))
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"]), "Redis data must be on a volume"

    consumed: set[str] = set()
    qjm_services = {n: s for n, s in services.items() if qjm_command(as_args(s.get("command", ["-"])))}
    assert {qjm_command(as_args(s["command"])) for s in qjm_services.values()} >= {"worker", "flower", "metrics",
                                                                                     "emulator"}
    shared = None
    for name, svc in qjm_services.items():
        args = as_args(svc["command"])
        env = svc["environment"]
        assert set(env) <= KNOWN_ENV, f"{name} sets variables qjm does not read: {set(env) - KNOWN_ENV}"
        assert env["QJM_REDIS_URL"].startswith("redis://redis:6379/"), name
        mine = {k: env[k] for k in SHARED_ENV}
        assert shared is None or mine == shared, f"{name} disagrees with the other services' settings"
        shared = mine
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and svc["image"] == "qjm:latest", name
        if qjm_command(args) == "worker":
            consumed |= check_worker(args)
            # --scale needs services without fixed names or host ports.
            assert "container_name" not in svc and "ports" not in svc, name
    assert consumed == QUEUES
    assert {n for n, s in qjm_services.items() if qjm_command(as_args(s["command"])) == "worker"} == {
        "worker-cpu", "worker-io"}
    assert queues_of(as_args(services["worker-cpu"]["command"])) == {CPU_QUEUE}
    assert queues_of(as_args(services["worker-io"]["command"])) == {IO_QUEUE}

    flower_env = services["flower"]["environment"]
    assert FLOWER_USER_ENV in flower_env and FLOWER_PASSWORD_ENV in flower_env, "Flower must use basic auth"
    assert as_args(services["emulator"]["command"])[:4] == ["qjm", "emulator", "--host", "0.0.0.0"]
    assert services["emulator"]["profiles"] == ["emulator"], "the emulator is optional"


def test_dockerfile_builds_the_one_image():
    text = (DEPLOY / "Dockerfile").read_text()
    copied = re.findall(r"^COPY\s+(\S+)", text, re.MULTILINE)
    # Everything `pip install .` needs: the package, the Celery app and the metadata.
    assert {"pyproject.toml", "qjm", "workers"} <= set(copied)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    assert re.search(r"^USER (?!root)", text, re.MULTILINE), "workers do not need root"


# ----------------------------------------------------------------------------- kubernetes
def test_k8s_manifests_agree_with_the_code():
    config = k8s("ConfigMap")["qjm-config"]["data"]
    assert set(config) <= KNOWN_ENV and SHARED_ENV <= set(config)
    compose_env = compose()["x-qjm-env"]
    for key in SHARED_ENV - {"QJM_REDIS_URL"}:
        assert config[key] == compose_env[key], f"{key} differs between compose and Kubernetes"

    sts = k8s("StatefulSet")["qjm-redis"]
    redis_container = sts["spec"]["template"]["spec"]["containers"][0]
    check_redis(redis_container["args"])
    assert sts["spec"]["volumeClaimTemplates"], "Redis needs a persistent volume"
    mount = redis_container["volumeMounts"][0]
    assert mount["name"] == sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    services = k8s("Service")
    host, port = re.match(r"redis://([^:/]+):(\d+)/", config["QJM_REDIS_URL"]).groups()
    assert host in services and int(port) in {p["port"] for p in services[host]["spec"]["ports"]}

    deployments = k8s("Deployment")
    consumed: dict[str, set[str]] = {}
    secrets = k8s("Secret")
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        args = container["command"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        refs = container.get("envFrom", [])
        assert {"configMapRef": {"name": "qjm-config"}} in refs, f"{name} must read qjm-config"
        if qjm_command(args) == "worker":
            consumed[name] = check_worker(args)
        if qjm_command(args) == "flower":
            secret = next(r["secretRef"]["name"] for r in refs if "secretRef" in r)
            assert {FLOWER_USER_ENV, FLOWER_PASSWORD_ENV} <= set(secrets[secret]["stringData"])
    assert consumed == {"qjm-worker-cpu": {CPU_QUEUE}, "qjm-worker-io": {IO_QUEUE}}
    assert {"qjm-flower", "qjm-metrics"} <= set(deployments)

    (scaled,) = k8s("ScaledObject").values()
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert consumed[target] == {CPU_QUEUE}, "KEDA must scale the workers of the queue it measures"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == CPU_QUEUE  # the Redis broker keeps a queue as a list of its name
    assert trigger["metadata"]["address"] == f"{host}:{port}"
    assert int(trigger["metadata"]["listLength"]) >= 1

    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


# ----------------------------------------------------------------------------- Procfile
#: Knobs of the one-machine set-up only (ports and sizes of the processes it starts).
PROCFILE_ONLY_ENV = {"QJM_REDIS_PORT", "QJM_DATA_DIR", "QJM_CPU_CONCURRENCY", "QJM_IO_CONCURRENCY",
                     "QJM_FLOWER_PORT", "QJM_METRICS_PORT"}


def test_procfile_agrees_with_the_code(monkeypatch):
    entries = procfile()
    assert {"redis", "flower", "metrics"} <= set(entries)
    check_redis(shlex.split(entries["redis"]))
    consumed: set[str] = set()
    for name, command in entries.items():
        args = shlex.split(command)
        if qjm_command(args) == "worker":
            consumed |= check_worker(args)
        for var in re.findall(r"\$\{?(QJM_[A-Z_]+)", command):
            assert var in KNOWN_ENV or var in PROCFILE_ONLY_ENV, f"{name} uses unknown {var}"
    assert consumed == QUEUES
    # Its Redis listens where qjm looks by default, so `make up` needs no settings.
    monkeypatch.delenv("QJM_REDIS_URL", raising=False)
    default_port = re.search(r":(\d+)/", Settings().redis_url).group(1)
    assert "${QJM_REDIS_PORT:-" + default_port + "}" in entries["redis"]


@pytest.fixture
def honcho(tmp_path):
    """``honcho -f deploy/Procfile start`` (what ``make up`` runs) on free ports."""
    ports = {k: str(free_port()) for k in ("QJM_REDIS_PORT", "QJM_FLOWER_PORT", "QJM_METRICS_PORT")}
    url = f"redis://127.0.0.1:{ports['QJM_REDIS_PORT']}/0"
    env = env_for(url, QJM_DATA_DIR=str(tmp_path / "redis"), QJM_CPU_CONCURRENCY="1", QJM_IO_CONCURRENCY="1",
                  **ports)
    proc = Proc([str(BIN / "honcho"), "-f", str(DEPLOY / "Procfile"), "-d", str(ROOT), "start"], env, "honcho")
    try:
        yield proc, url, ports, tmp_path / "redis"
    finally:
        proc.stop()


def test_procfile_runs_a_job_set(honcho):
    proc, url, ports, data_dir = honcho

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(proc.output())
        return redis_answers(url) and workers_answering(url) == 2

    wait_for(ready, 180, "Procfile's Redis and both workers", interval=0.5)
    circuits = [basis_state(k, name=f"p{k}") for k in range(6)]
    js = JobManager(url).run(circuits, backend="aer_simulator", max_experiments_per_job=2, shots=32)
    results = js.results(timeout=120)
    assert [results.get_counts(k) for k in range(6)] == [{expected(k): 32} for k in range(6)]
    assert js.status() is JobSetStatus.DONE

    flower_url = f"http://127.0.0.1:{ports['QJM_FLOWER_PORT']}/healthcheck"
    wait_for(lambda: http_get(flower_url)[0] == 200, 180, "Procfile's Flower", interval=0.2)
    metrics_url = f"http://127.0.0.1:{ports['QJM_METRICS_PORT']}/metrics"
    wait_for(lambda: 'qjm_job_sets{backend="aer_simulator",state="DONE"} 1.0' in http_get(metrics_url)[1], 180,
             "Procfile's metrics to count the set", interval=0.2)
    assert any(data_dir.rglob("*.aof")), "Redis runs with its append-only file in QJM_DATA_DIR"
