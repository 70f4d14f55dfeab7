"""qjm's state on a Redis Cluster of 3 masters and 3 replicas (``tests.redis_cluster``), as the
README deploys it: ``QJM_REDIS_CLUSTER=1``, the broker on RabbitMQ, Celery's results on a plain
Redis. Sets spread over the shards and end right; a master SIGKILLed mid-run fails over to its
replica and every set still ends right, each remote job posted once per attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from qjm import JobManager, JobSetStatus, ManagedJobSet
from qjm.config import Settings
from qjm.errors import SettingsError
from qjm.lifecycle import JobStatus
from qjm.ops.cluster import EmulatorProcess, wait_for
from qjm.store import Store, keys

from .circuits import basis_state, expected
from .procs import RedisServer, Worker
from .rabbitmq import private_vhost
from .redis_cluster import RedisClusterProcesses


@dataclass
class Deployment:
    cluster: RedisClusterProcesses
    emulator: EmulatorProcess
    worker: Worker
    env: dict[str, str]

    def store(self) -> Store:
        return Store(self.cluster.url, Settings(redis_url=self.cluster.url, redis_cluster=True,
                                                broker_url=self.env["QJM_BROKER_URL"],
                                                result_backend_url=self.env["QJM_RESULT_BACKEND_URL"]))


def assert_leave_the_work_list(store: Store, ids: set[str]) -> None:
    """Final sets leave the reconciler's work list: each just after its final notice (the list is
    on another slot than the set, so the worker takes it out with a command of its own once the
    finish script has run, and a removal lost in a failover is redone by the worker's reconciler,
    which ticks every second here). A set seen final may so be listed a moment longer, never for
    more than a few ticks; how long it was is printed."""
    now = time.time()
    stale = {sid: (rec.status.value, f"final {now - (rec.finished or now):.3f} s before")
             for sid in set(store.running_ids()) & ids for rec in [store.job_set(sid)]}
    started = time.monotonic()
    wait_for(lambda: not set(store.running_ids()) & ids, 10, f"final sets to leave the reconciler's work list: {stale}")
    if stale:
        print(f"final sets still in the reconciler's work list, gone {time.monotonic() - started:.3f} s later: {stale}")


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    cluster = RedisClusterProcesses().start()
    results = RedisServer().start()
    emulator = EmulatorProcess(job_seconds=0.5, pending_limit=4).wait_ready()
    worker = None
    try:
        with private_vhost() as broker, pytest.MonkeyPatch.context() as mp:
            env = {"QJM_REDIS_CLUSTER": "1", "QJM_BROKER_URL": broker, "QJM_RESULT_BACKEND_URL": results.url,
                   "QISKIT_IBM_URL": emulator.url}
            for name, value in env.items():
                mp.setenv(name, value)
            mp.setenv("QJM_REDIS_URL", cluster.url)
            worker = Worker(cluster.url, concurrency=3, QJM_MAX_PENDING_JOBS="4", QJM_RECONCILE_GRACE="4",
                            **env).wait_ready()
            yield Deployment(cluster, emulator, worker, env)
    finally:
        if worker is not None:
            worker.stop()
        emulator.stop()
        results.stop()
        cluster.stop()


def local_set(jm: JobManager, k: int, n: int = 4, per_job: int = 1) -> ManagedJobSet:
    return jm.run([basis_state((k + j) % 8, name=f"l{k}-{j}") for j in range(n)], backend="aer_simulator",
                  max_experiments_per_job=per_job, shots=16, name=f"local-{k}")


def remote_set(jm: JobManager, k: int, n: int = 3) -> ManagedJobSet:
    return jm.run([basis_state((k + j) % 32, n=5, name=f"r{k}-{j}") for j in range(n)], backend="ibm_manila",
                  max_experiments_per_job=1, shots=64, name=f"remote-{k}")


def assert_local_right(js: ManagedJobSet, k: int, n: int) -> None:
    assert [js.results().get_counts(j) for j in range(n)] == [{expected(k + j): 16} for j in range(n)]


def assert_remote_right(js: ManagedJobSet, k: int, n: int) -> None:
    results = js.results()
    for j in range(n):
        counts = results.get_counts(j)
        assert sum(counts.values()) == 64 and max(counts, key=counts.get) == expected(k + j, 5), (j, counts)


def assert_posted_once_per_attempt(d: Deployment, js: ManagedJobSet, n_jobs: int) -> None:
    posts, sid, r = d.emulator.stats()["posts_by_tag"], js.job_set_id(), d.store().r
    for i in range(n_jobs):
        attempt = int(r.hget(keys.job(sid, i), "attempt") or 1)
        assert [posts.get(f"qjm:{sid}:{i}:a{a}") for a in range(1, attempt + 1)] == [1] * attempt, (i, posts)


def test_the_store_speaks_cluster_and_refuses_celery_on_it(deployment):
    """With ``QJM_REDIS_CLUSTER=1`` the store is a Cluster client that sees all six nodes; a process
    started without a broker or result backend off the Cluster is told what to set, and stops."""
    store = deployment.store()
    assert store.cluster and len(store.r.get_nodes()) == 6
    for missing in ("broker_url", "result_backend_url"):
        given = {"broker_url": deployment.env["QJM_BROKER_URL"],
                 "result_backend_url": deployment.env["QJM_RESULT_BACKEND_URL"], missing: None}
        with pytest.raises(SettingsError, match="QJM_BROKER_URL" if missing == "broker_url" else "QJM_RESULT_BACKEND_URL"):
            Settings(redis_url=deployment.cluster.url, redis_cluster=True, **given)
    with pytest.raises(SettingsError, match="is the Redis Cluster node"):
        Settings(redis_url=deployment.cluster.url, redis_cluster=True, broker_url=deployment.cluster.url,
                 result_backend_url=deployment.env["QJM_RESULT_BACKEND_URL"])
    env = {**deployment.env, "QJM_BROKER_URL": ""}
    refused = Worker(deployment.cluster.url, concurrency=1, **env)
    try:
        wait_for(lambda: refused.proc.poll() is not None, 120, "the worker without a broker to stop")
        assert "set QJM_BROKER_URL to a RabbitMQ" in refused.output()
    finally:
        refused.stop()


def test_local_and_remote_sets_end_right_on_six_nodes(deployment):
    jm = JobManager()
    local, remote = local_set(jm, 1, n=6, per_job=2), remote_set(jm, 3, n=4)
    for js in (local, remote):
        assert js.wait(timeout=180) is JobSetStatus.DONE, js.report()
    assert_local_right(local, 1, 6)
    assert_remote_right(remote, 3, 4)
    assert_posted_once_per_attempt(deployment, remote, 4)
    assert "CROSSSLOT" not in deployment.worker.output()


def test_thirty_sets_spread_over_all_three_masters(deployment):
    """Thirty sets at once: their keys land on every master, each ends right, and listing (an
    index on one slot) and the reconciler's work list see every one of them."""
    jm = JobManager()
    sets = {k: local_set(jm, k, n=2) for k in range(30)}
    store = deployment.store()
    owners = {deployment.cluster.master_of(keys.job_set(js.job_set_id())).port for js in sets.values()}
    assert len(owners) == 3, owners
    per_master = {port: sum(1 for js in sets.values() if deployment.cluster.master_of(keys.job_set(js.job_set_id())).port == port)
                  for port in owners}
    assert all(n > 0 for n in per_master.values())
    for k, js in sets.items():
        assert js.wait(timeout=180) is JobSetStatus.DONE, js.report()
        assert_local_right(js, k, 2)
    listed = {js.job_set_id() for js in jm.job_sets(name=None)}
    assert {js.job_set_id() for js in sets.values()} <= listed
    assert_leave_the_work_list(store, {js.job_set_id() for js in sets.values()})


def test_masters_without_qjms_scripts_get_them(deployment):
    """A replica that takes a slot over has none of the scripts its master had loaded (Redis 7.0
    replicates none): every way qjm runs a script (alone, in a Cluster pipeline, in the pipeline
    that waits for a replica) loads it again. Shown with every master's script cache emptied."""
    for node in deployment.cluster.master_nodes():
        node.client().script_flush()
    jm = JobManager()
    local, remote = local_set(jm, 5, n=4, per_job=1), remote_set(jm, 6, n=2)
    for js in (local, remote):
        assert js.wait(timeout=180) is JobSetStatus.DONE, js.report()
    assert_local_right(local, 5, 4)
    assert_remote_right(remote, 6, 2)
    assert_posted_once_per_attempt(deployment, remote, 2)


@pytest.mark.fault
def test_a_master_killed_mid_run_loses_nothing_and_returns_as_a_replica(deployment):
    """SIGKILL the master holding a remote set while local and remote sets run. Its replica takes
    over; every set ends DONE with right results, no remote job posted twice for one attempt,
    the reconciler's work list and the listing still hold every set; the old master comes back
    as a replica of the node that replaced it, and the Cluster is whole again."""
    d, jm, store = deployment, JobManager(), deployment.store()
    remotes = {k: remote_set(jm, k, n=3) for k in range(4)}
    locals_ = {k: local_set(jm, k, n=12) for k in range(4)}
    everything = [*remotes.values(), *locals_.values()]
    ids = {js.job_set_id() for js in everything}
    # The victim holds a remote set, and is not the node QJM_REDIS_URL names: a process started
    # while that one is down could not find the Cluster (README: name an address that resolves to
    # a live node). A fifth remote set is added if all four landed on that node (1 time in 27).
    url_node = d.cluster.nodes[0]
    while not (mine := [k for k, js in remotes.items()
                        if d.cluster.master_of(keys.job_set(js.job_set_id())) is not url_node]):
        remotes[len(remotes)] = remote_set(jm, len(remotes), n=3)
        ids.add(remotes[len(remotes) - 1].job_set_id())
        everything.append(remotes[len(remotes) - 1])
    watched = remotes[mine[0]]
    victim = d.cluster.master_of(keys.job_set(watched.job_set_id()))

    def remote_under_way() -> bool:
        jobs = store.jobs(watched.job_set_id())
        return any(j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) for j in jobs) and not watched.status().final

    wait_for(remote_under_way, 120, "a remote job of the first set to be posted", interval=0.02)
    d.cluster.kill_master_and_wait(victim)
    assert victim not in d.cluster.master_nodes()
    running = set(store.running_ids())
    listed = {js.job_set_id() for js in jm.job_sets()}
    assert ids <= listed, "the listing lost a set"
    assert {js.job_set_id() for js in everything if not js.status().final} <= running, "the reconciler's list lost a set"
    for k, js in remotes.items():
        assert js.wait(timeout=240) is JobSetStatus.DONE, js.report()
        assert_remote_right(js, k, 3)
        assert_posted_once_per_attempt(d, js, 3)
    for k, js in locals_.items():
        assert js.wait(timeout=240) is JobSetStatus.DONE, js.report()
        assert_local_right(js, k, 12)
    assert_leave_the_work_list(store, ids)
    d.cluster.restart(victim)
    assert d.cluster.role(victim) == "slave"
    assert len(d.cluster.master_nodes()) == 3
    again = jm.retrieve_job_set(watched.job_set_id())
    assert again.status() is JobSetStatus.DONE


def test_a_password_protected_cluster(monkeypatch):
    """A Cluster whose nodes require a password: given in ``QJM_REDIS_PASSWORD`` (never in the
    URL), the store finds every node and keeps a set on it; a wrong or missing one is a qjm error
    that says what to set and shows no password."""
    from qiskit import QuantumCircuit

    from qjm.errors import StoreUnavailableError
    from qjm.ops.testing import create_job_set

    password = "cluster-secret-7f3a"
    cluster = RedisClusterProcesses(password=password).start()
    try:
        monkeypatch.setenv("QJM_REDIS_CLUSTER", "1")
        monkeypatch.setenv("QJM_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/unused")
        monkeypatch.setenv("QJM_RESULT_BACKEND_URL", "redis://127.0.0.1:6379/0")
        for given, wanted in ((None, "QJM_REDIS_PASSWORD"), ("wrong-one", "QJM_REDIS_PASSWORD")):
            if given is None:
                monkeypatch.delenv("QJM_REDIS_PASSWORD", raising=False)
            else:
                monkeypatch.setenv("QJM_REDIS_PASSWORD", given)
            with pytest.raises(StoreUnavailableError, match=wanted) as refused:
                Store(cfg=Settings(redis_url=cluster.url)).ping()
            assert password not in str(refused.value) and "wrong-one" not in str(refused.value)
        monkeypatch.setenv("QJM_REDIS_PASSWORD", password)
        store = Store(cfg=Settings(redis_url=cluster.url))
        store.ping()
        assert len(store.r.get_primaries()) == 3
        qc = QuantumCircuit(1, 1)
        qc.measure(0, 0)
        sids = [create_job_set(store, [qc, qc], "aer_simulator", name=f"pw-{k}") for k in range(12)]
        assert [store.job_set(sid).n_jobs for sid in sids] == [2] * 12
        assert set(store.index.query(limit=None)) == set(sids)
        assert len({cluster.master_of(keys.job_set(sid)).port for sid in sids}) > 1  # more than one shard used
    finally:
        cluster.stop()
