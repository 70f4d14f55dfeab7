"""Redis Cluster readiness of qjm's own keys: every key qjm writes for a job set hashes to the
set's one slot, and every key of a backend's slot pool to the pool's one slot, so each Lua script
and transaction qjm runs touches a single slot. Checked on the keys a real run writes (local and
remote sets, snapshots taken while they run and after), not on the key functions alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from qjm import JobManager, JobSetStatus
from qjm.ops.cluster import EmulatorProcess, redis_answers, wait_for
from qjm.store import keys

from .circuits import basis_state
from .procs import RedisServer, Worker
from .rabbitmq import private_vhost
from .redis_cluster import cluster_port

SET_KEY = re.compile(r"^qjm:\{(?P<sid>[0-9a-f]{32})\}:")
POOL_KEY = re.compile(r"^qjm:\{slots:(?P<backend>[^}]+)\}:")
#: qjm's other keys: one per backend, queue or worker (each under its own tag), or global.
OTHER_KEYS = [re.compile(p) for p in (
    r"^qjm:durations:\{[^}]+\}$", r"^qjm:pace:\{[^}]+\}$", r"^qjm:runs:\{[^}]+\}$", r"^qjm:\{backends:[0-9a-f]+\}:(listing|refresh)$",
    r"^qjm:\{usage:[0-9a-f]+\}:(\d{4}-\d{2}|totals|service|service-refresh)$",
    r"^qjm:metrics:[a-z_]+:\{[^}]+\}$", r"^qjm:queue:\{[^}]+\}:seq$",
    r"^qjm:worker:\{[^}]+\}$", r"^qjm:sets:(name|tag|backend|status):.+$")]
GLOBAL_KEYS = {keys.INDEX, keys.RUNNING, keys.QUEUES_STARTED, keys.RECONCILER_LOCK, keys.REDIS_RESTARTED,
               keys.REDIS_RUN_ID, keys.RESENT, keys.SETS_EXPIRY, keys.SETS_ENTRIES}


@pytest.fixture(scope="module")
def written() -> Iterator[tuple[set[str], list[str]]]:
    """Every qjm key seen in Redis during and after a local and a remote set; and the set ids."""
    emulator = EmulatorProcess(job_seconds=0.3, pending_limit=2).wait_ready()
    redis = RedisServer().start()
    worker = Worker(redis.url, concurrency=2, QISKIT_IBM_URL=emulator.url, QJM_MAX_PENDING_JOBS="2",
                    QJM_RECONCILE_GRACE="3").wait_ready()
    seen: set[str] = set()
    stop = threading.Event()

    def snapshot() -> None:
        client = redis.client()
        while not stop.wait(0.02):
            seen.update(k.decode() for k in client.scan_iter(match="qjm:*", count=1000))

    watcher = threading.Thread(target=snapshot, daemon=True)
    watcher.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("QISKIT_IBM_URL", emulator.url)
            jm = JobManager(redis.url)
            sets = [jm.run([basis_state(k % 8, name=f"l{k}") for k in range(6)], backend="aer_simulator",
                           max_experiments_per_job=2, shots=32),
                    jm.run([basis_state(k % 8, n=5, name=f"r{k}") for k in range(6)], backend="ibm_manila",
                           max_experiments_per_job=1, shots=32)]
            for js in sets:
                assert js.wait(timeout=120) is JobSetStatus.DONE, js.report()
                js.results()
        stop.set()
        watcher.join()
        seen.update(k.decode() for k in redis.client().scan_iter(match="qjm:*", count=1000))
        yield seen, [js.job_set_id() for js in sets]
    finally:
        stop.set()
        worker.stop()
        redis.stop()
        emulator.stop()


def test_every_key_of_a_set_hashes_to_the_sets_one_slot(written):
    seen, sids = written
    slots: dict[str, set[int]] = defaultdict(set)
    for key in seen:
        m = SET_KEY.match(key)
        if m:
            slots[m["sid"]].add(key_slot(key.encode()))
        else:
            assert not any(sid in key for sid in sids), f"{key} names a set outside the set's hash tag"
    assert set(slots) == set(sids), "both sets wrote keys under their tag"
    for sid in sids:
        assert slots[sid] == {key_slot(f"{{{sid}}}".encode())}, f"the keys of set {sid} span slots {slots[sid]}"
    per_set = sorted(k.split("}:", 1)[1] for k in seen if sids[1] in k)
    assert {"set", "job:0", "job:0:isa", "job:0:circuits"} <= set(per_set), per_set


def test_every_key_of_a_slot_pool_hashes_to_the_pools_one_slot(written):
    seen, _ = written
    pools: dict[str, set[int]] = defaultdict(set)
    for key in seen:
        if m := POOL_KEY.match(key):
            pools[m["backend"]].add(key_slot(key.encode()))
    assert set(pools) == {"ibm_manila"}, pools
    assert pools["ibm_manila"] == {key_slot(b"{slots:ibm_manila}")}
    assert {keys.slots("ibm_manila"), keys.waiting("ibm_manila")} <= seen


def test_qjm_writes_no_key_outside_the_schema(written):
    """A key that is neither a set's, nor a pool's, nor one of the known per-backend, per-queue,
    per-worker or global keys would be one whose slot nobody thought about."""
    seen, _ = written
    stray = [k for k in seen if not (SET_KEY.match(k) or POOL_KEY.match(k) or k in GLOBAL_KEYS
                                     or any(p.match(k) for p in OTHER_KEYS))]
    assert stray == []


class OneNodeCluster:
    """``redis-server`` in cluster mode, owning all 16384 slots: clients need no redirection, yet
    it refuses, as any Redis Cluster does, a command, script or transaction whose keys span slots
    (CROSSSLOT)."""

    def __init__(self) -> None:
        self.port = cluster_port()
        self.dir = tempfile.mkdtemp(prefix="qjm-cluster-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            if self.proc.poll() is not None:
                out = Path(self.dir, "redis.log").read_text(errors="replace") if Path(self.dir, "redis.log").exists() else ""
                raise RuntimeError(f"redis-server (cluster mode) exited: {out[-2000:]}")
            return redis_answers(self.url)

        wait_for(answers, 10, "the cluster node to answer")
        client = self.client()
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_for(lambda: client.cluster("info")["cluster_state"] == "ok", 20, "the cluster to be ok")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_a_set_runs_with_qjms_state_on_a_redis_cluster(monkeypatch):
    """The deployment the README describes: qjm's state on Redis Cluster, the broker on RabbitMQ,
    Celery's results on a plain Redis. Local and remote sets end right; a cross-slot command
    anywhere in qjm would have failed them."""
    cluster = OneNodeCluster()
    results_redis = RedisServer().start()
    emulator = EmulatorProcess(job_seconds=0.3, pending_limit=2).wait_ready()
    workers: list[Worker] = []
    try:
        with private_vhost() as broker:
            env = {"QJM_BROKER_URL": broker, "QJM_RESULT_BACKEND_URL": results_redis.url}
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            monkeypatch.setenv("QISKIT_IBM_URL", emulator.url)
            workers.append(Worker(cluster.url, concurrency=2, QISKIT_IBM_URL=emulator.url, QJM_MAX_PENDING_JOBS="2",
                                  QJM_RECONCILE_GRACE="3", **env).wait_ready())
            jm = JobManager(cluster.url)
            local = jm.run([basis_state(k % 8, name=f"l{k}") for k in range(6)], backend="aer_simulator",
                           max_experiments_per_job=2, shots=32)
            remote = jm.run([basis_state(k % 8, n=5, name=f"r{k}") for k in range(6)], backend="ibm_manila",
                            max_experiments_per_job=1, shots=64)
            for js in (local, remote):
                assert js.wait(timeout=120) is JobSetStatus.DONE, js.report()
            assert [local.results().get_counts(k) for k in range(6)] == [{format(k % 8, "03b"): 32} for k in range(6)]
            counts = remote.results().get_counts(5)
            assert max(counts, key=counts.get) == "00101"
            assert not [w for w in workers if "CROSSSLOT" in w.output()]
            on_cluster = {k.decode() for k in cluster.client().scan_iter(count=1000)}
            assert on_cluster and all(k.startswith("qjm:") for k in on_cluster), "Celery wrote to the cluster"
            # qjm stores no task results (sets are not chords): Celery's result backend stays empty.
        assert not any(k.startswith(b"celery-task-meta-") for k in results_redis.client().scan_iter(count=1000))
    finally:
        for w in workers:
            w.stop()
        emulator.stop()
        results_redis.stop()
        cluster.stop()
