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
from qjm.config import REDIS_PASSWORD_ENV, Settings
from qjm.engine.tasks import CPU_QUEUE, IO_QUEUE, ROUTES
from qjm.ops.cli import APP, FLOWER_PASSWORD_ENV, FLOWER_USER_ENV
from qjm.ops.cluster import redis_answers, workers_answering

from .circuits import basis_state, expected
from .ops_fixtures import BIN, QJM, Proc, env_for, http_get, qjm
from .procs import ROOT, RedisServer, free_port, wait_for

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


def required_from_environment(value: object, var: str) -> bool:
    """``${VAR:?message}``: compose refuses to start when VAR is unset or empty."""
    return isinstance(value, str) and re.fullmatch(r"\$\{" + var + r":\?[^}]+\}", value) is not None


# ----------------------------------------------------------------------------- compose
def test_compose_requires_a_redis_password_and_keeps_redis_local():
    services = compose()["services"]
    redis_svc = services["redis"]
    args = as_args(redis_svc["command"])
    assert "--requirepass" in args, "Redis must require a password"
    assert required_from_environment(args[args.index("--requirepass") + 1], REDIS_PASSWORD_ENV)
    # The health check logs in with the same password (redis-cli reads REDISCLI_AUTH).
    assert required_from_environment(redis_svc["environment"]["REDISCLI_AUTH"], REDIS_PASSWORD_ENV)
    assert "PONG" in " ".join(redis_svc["healthcheck"]["test"])
    # Every qjm process gets the password from the environment, not from a URL in a command line.
    for name, svc in services.items():
        if qjm_command(as_args(svc.get("command", ["-"]))) not in (None, "emulator"):
            env = svc["environment"]
            assert required_from_environment(env[REDIS_PASSWORD_ENV], REDIS_PASSWORD_ENV), name
            assert "@" not in env["QJM_REDIS_URL"], f"{name}: the password belongs in {REDIS_PASSWORD_ENV}"
    # Published on loopback unless an address is chosen on purpose; never on every interface by default.
    for port in redis_svc.get("ports", []):
        host = str(port).rsplit(":", 2)[0] if str(port).count(":") >= 2 else ""
        assert host and host != "0.0.0.0", f"Redis must not be published on every interface: {port}"
        assert re.fullmatch(r"\$\{QJM_REDIS_BIND:-127\.0\.0\.1\}|127\.0\.0\.1", host), port


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
    for var in (FLOWER_USER_ENV, FLOWER_PASSWORD_ENV):
        assert required_from_environment(flower_env[var], var), f"compose must refuse to start without {var}"
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
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        args = container["command"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        refs = container.get("envFrom", [])
        assert {"configMapRef": {"name": "qjm-config"}} in refs, f"{name} must read qjm-config"
        if qjm_command(args) == "worker":
            consumed[name] = check_worker(args)
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

    assert trigger["authenticationRef"]["name"] in k8s("TriggerAuthentication"), "KEDA must log in to Redis"
    (auth,) = k8s("TriggerAuthentication")[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
    assert auth["parameter"] == "password" and auth["key"] == REDIS_PASSWORD_ENV

    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


def secret_refs(container: dict) -> dict[str, bool]:
    """Secrets a container reads, each with whether it may start without it (``optional``)."""
    refs = {r["secretRef"]["name"]: r["secretRef"].get("optional", False)
            for r in container.get("envFrom", []) if "secretRef" in r}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[ref["name"]] = ref.get("optional", False)
    return refs


def test_k8s_requires_secrets_and_ships_none():
    # No password in the repository: the secrets are created with kubectl (config.yaml says how).
    for secret in k8s("Secret").values():
        assert not secret.get("data") and not secret.get("stringData"), f"{secret['metadata']['name']} ships values"
    text = "\n".join(p.read_text() for p in (DEPLOY / "k8s").glob("*.yaml"))
    assert "change-me" not in text
    assert "kubectl create secret generic qjm-redis-auth" in text and "kubectl create secret generic qjm-flower-auth" in text

    sts = k8s("StatefulSet")["qjm-redis"]
    (redis_container,) = sts["spec"]["template"]["spec"]["containers"]
    args = redis_container["args"]
    assert args[args.index("--requirepass") + 1] == f"$({REDIS_PASSWORD_ENV})", "Redis must require the password"
    env = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in redis_container["env"]}
    assert env[REDIS_PASSWORD_ENV] == {"name": "qjm-redis-auth", "key": REDIS_PASSWORD_ENV}
    assert env["REDISCLI_AUTH"] == env[REDIS_PASSWORD_ENV], "the readiness probe logs in too"
    assert secret_refs(redis_container) == {"qjm-redis-auth": False}

    for name, dep in k8s("Deployment").items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        refs = secret_refs(container)
        # Every qjm pod gets QJM_REDIS_PASSWORD and does not start without it.
        assert refs.get("qjm-redis-auth") is False, f"{name} must require the qjm-redis-auth secret"
        assert "@" not in k8s("ConfigMap")["qjm-config"]["data"]["QJM_REDIS_URL"]
        if qjm_command(container["command"]) == "flower":
            assert refs.get("qjm-flower-auth") is False, "Flower must require its credentials"
            assert "--no-auth" not in container["command"]


def test_k8s_network_policy_lets_only_qjm_reach_redis():
    sts = k8s("StatefulSet")["qjm-redis"]
    redis_labels = sts["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in k8s("NetworkPolicy").values()
                if p["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()]
    assert policies, "a NetworkPolicy must select the Redis pods"
    pods = {name: dep["spec"]["template"]["metadata"]["labels"] for name, dep in k8s("Deployment").items()}
    for policy in policies:
        spec = policy["spec"]
        assert "Ingress" in spec["policyTypes"]
        for rule in spec["ingress"]:
            assert rule.get("from"), "an ingress rule without 'from' admits every pod"
            assert {p["port"] for p in rule["ports"]} == {6379}
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                if "namespaceSelector" in peer:
                    # Only KEDA's operator from its own namespace (it measures the qjm.cpu queue).
                    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
                    assert peer["podSelector"]["matchLabels"] == {"app": "keda-operator"}
                else:
                    selector = peer["podSelector"]["matchLabels"]
                    assert selector, "an empty podSelector admits every pod of the namespace"
                    admitted = {n for n, labels in pods.items() if selector.items() <= labels.items()}
                    assert admitted == set(pods), f"qjm pods left out of Redis: {set(pods) - admitted}"


# ----------------------------------------------------------------------------- qjm flower's refusal
def test_flower_refuses_to_start_without_credentials():
    env = env_for(f"redis://127.0.0.1:{free_port()}/0")  # env_for drops inherited Flower credentials
    refused = qjm("flower", "--port=1", env=env, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and FLOWER_USER_ENV in line and FLOWER_PASSWORD_ENV in line and "--no-auth" in line

    half = qjm("flower", env={**env, FLOWER_USER_ENV: "ops"}, timeout=120)
    assert half.returncode == 1 and FLOWER_PASSWORD_ENV in half.stderr

    # --no-auth: it starts, says it is open, and answers without credentials.
    port = free_port()
    redis_proc = RedisServer().start()
    flower = Proc([QJM, "flower", "--no-auth", f"--port={port}", "--address=127.0.0.1"], env_for(redis_proc.url),
                  "flower-open")
    try:
        def answers() -> bool:
            if not flower.alive():
                raise RuntimeError(flower.output())
            return http_get(f"http://127.0.0.1:{port}/healthcheck")[0] == 200

        wait_for(answers, 180, "Flower to answer", interval=0.2)
        status, page = http_get(f"http://127.0.0.1:{port}/workers")
        assert status == 200 and "Flower" in page, "with --no-auth its pages need no credentials"
        assert "without authentication" in flower.output()
    finally:
        flower.stop()
        redis_proc.stop()


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
    # One machine: everything on loopback; Redis takes QJM_REDIS_PASSWORD when it is set, Flower
    # runs open on loopback (with credentials when they are set).
    assert "--bind 127.0.0.1" in entries["redis"]
    assert '${QJM_REDIS_PASSWORD:+--requirepass "$QJM_REDIS_PASSWORD"}' in entries["redis"]
    flower = shlex.split(entries["flower"])
    assert "--no-auth" in flower and "--address=127.0.0.1" in flower


PROCFILE_PASSWORD = "procfile-pw-5f1c0d"


@pytest.fixture
def honcho(tmp_path):
    """``honcho -f deploy/Procfile start`` (what ``make up`` runs) on free ports."""
    ports = {k: str(free_port()) for k in ("QJM_REDIS_PORT", "QJM_FLOWER_PORT", "QJM_METRICS_PORT")}
    url = f"redis://127.0.0.1:{ports['QJM_REDIS_PORT']}/0"
    # With QJM_REDIS_PASSWORD set, the Procfile's Redis requires it and every qjm process sends it.
    env = env_for(url, QJM_DATA_DIR=str(tmp_path / "redis"), QJM_CPU_CONCURRENCY="1", QJM_IO_CONCURRENCY="1",
                  QJM_REDIS_PASSWORD=PROCFILE_PASSWORD, **ports)
    proc = Proc([str(BIN / "honcho"), "-f", str(DEPLOY / "Procfile"), "-d", str(ROOT), "start"], env, "honcho")
    try:
        yield proc, url, ports, tmp_path / "redis"
    finally:
        proc.stop()


def test_procfile_runs_a_job_set(honcho):
    proc, plain_url, ports, data_dir = honcho
    url = plain_url.replace("redis://", f"redis://:{PROCFILE_PASSWORD}@")

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
    assert not redis_answers(plain_url), "the Procfile's Redis requires QJM_REDIS_PASSWORD when it is set"
    assert PROCFILE_PASSWORD not in proc.output(), "no process may log the Redis password"
