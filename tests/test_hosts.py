"""Several hosts, really: worker hosts are network namespaces on their own addresses, Redis (with
a password) and the emulator listen on the address of the root namespace, and one worker host's
cable is pulled mid-run (``tests.netns``).

A cut is unlike a killed worker: the cut host's processes keep running and its TCP connections
hang instead of failing, so whatever it was doing may land in Redis or on the service *after*
the link comes back. The other host must finish the set within the documented bound (grace +
a reconciler tick + a poll interval + the remaining work; printed, not asserted: speed is not
tested here), and healing must change nothing: no second post of any job, the same results.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from qjm import JobManager, JobSetStatus, JobStatus, ManagedJobSet
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess, wait_for
from qjm.store import JobRecord, keys

from .circuits import basis_state, expected
from .netns import Host, NetnsUnavailable, Network, why_unavailable

pytestmark = pytest.mark.fault

GRACE = 3.0
#: Generous: the set must end, the time it takes is printed, not asserted.
FINISH = 180
#: How long a healed host may take to be heard again: its hung connections retransmit with
#: TCP's back-off (up to two minutes between tries), or it reconnects.
RECONNECT = 240


@dataclass
class Site:
    """What the fixture made: the network, Redis, maybe the emulator, one worker per host."""

    net: Network
    redis: RedisProcess
    emulator: EmulatorProcess | None
    workers: list[WorkerProcess]

    @property
    def hosts(self) -> list[Host]:
        return self.net.hosts


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Site]]:
    """Build the network, a password-protected Redis on its address (and an emulator there when
    asked), and a worker on each host. Teardown kills every worker's process group, then stops
    the servers, then deletes namespaces, veths and bridge, whatever failed before."""
    reason = why_unavailable()
    if reason:
        pytest.skip(f"network namespaces cannot be made here, so there are no separate hosts: {reason}")
    made: dict[str, object] = {}
    workers: list[WorkerProcess] = []

    def start(n_hosts: int = 2, concurrency: int = 2, emulator: dict | None = None, **env: str) -> Site:
        try:
            net = Network(n_hosts).create()
        except NetnsUnavailable as exc:  # namespaces yes, but no veth or bridge (create removed its part)
            pytest.skip(f"the hosts' network cannot be made here: {exc}")
        made["net"] = net
        password = secrets.token_hex(16)
        redis = RedisProcess(appendonly=True, bind=f"{net.address} 127.0.0.1", password=password).start()
        made["redis"] = redis
        emu = None
        worker_env: dict[str, str] = {"QJM_REDIS_PASSWORD": password, "QJM_RECONCILE_GRACE": str(GRACE), **env}
        if emulator is not None:
            emu = EmulatorProcess(host=net.address, **emulator).wait_ready()
            made["emulator"] = emu
            worker_env["QISKIT_IBM_URL"] = emu.url
        for host in net.hosts:
            workers.append(WorkerProcess(redis.url, concurrency=concurrency, prefix=host.exec_prefix,
                                         **worker_env))  # type: ignore[arg-type]  # QJM_* names, no parameter's
        for w in workers:
            w.wait_ready()
        # The test's own client sits on the Redis host (the root namespace), which is never cut.
        for key, value in {"QJM_REDIS_URL": redis.url, **worker_env}.items():
            monkeypatch.setenv(key, value)
        return Site(net, redis, emu, workers)

    yield start
    for w in workers:
        print(f"worker {w.name} log: {w.log}")
        try:
            w.kill()
            w.stop()
        except Exception as exc:  # noqa: BLE001 - the rest must still be torn down
            print(f"stopping {w.name}: {exc!r}")
    for what in ("emulator", "redis"):
        thing = made.get(what)
        if thing is not None:
            try:
                thing.stop()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001
                print(f"stopping {what}: {exc!r}")
    net = made.get("net")
    if isinstance(net, Network):
        net.close()
        assert not net.leftovers(), net.leftovers()


def dominant(counts: dict[str, int]) -> str:
    return max(counts, key=lambda outcome: counts[outcome])


def jobs_of(js: ManagedJobSet) -> list[JobRecord]:
    return js._store.jobs(js.job_set_id(), len(js.statuses()))


def cut_while(host: Host, js: ManagedJobSet, holds: Callable[[JobRecord], bool], what: str,
              interval: float = 0.01) -> float:
    """Pull the host's cable as soon as it holds work of the set; returns when (monotonic)."""
    wait_for(lambda: any(holds(j) for j in jobs_of(js)), 90, what, interval=interval)
    host.cut()
    return time.monotonic()


def heartbeat_after(site: Site, worker: WorkerProcess, since: float) -> bool:
    """The worker's reconciler wrote its heartbeat after ``since`` (wall clock): it is back."""
    raw = site.redis.client().get(keys.worker_alive(worker.name))
    return raw is not None and float(raw) > since


def resent(site: Site) -> dict[str, int]:
    raw = site.redis.client().hgetall(keys.RESENT)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def heal_and_wait(site: Site, host: Host, worker: WorkerProcess) -> float:
    """Plug the cable back and wait until the host's worker is heard again; returns how long."""
    healed, t0 = time.time(), time.monotonic()
    host.heal()
    wait_for(lambda: heartbeat_after(site, worker, healed), RECONNECT, f"{worker.name} to be heard again",
             interval=0.5)
    assert worker.proc.poll() is None, f"the healed host's worker exited:\n{worker.output()[-3000:]}"
    return time.monotonic() - t0


def test_local_set_finishes_on_the_other_host_and_healing_changes_nothing(site: Callable[..., Site]) -> None:
    s = site()
    (host_a, _), (a, b) = s.hosts, s.workers
    n = 40
    js = JobManager().run([basis_state(k % 8, name=f"k{k}") for k in range(n)], backend="fake_manila",
                          max_experiments_per_job=2, shots=256)
    # Mid-run: some jobs are done and the host is inside a step of another.
    cut_at = cut_while(host_a, js, lambda j: JobStatus.DONE in js.statuses() and j.started_by == a.name
                       and j.step_started and not j.status.final, f"{a.name} to be running a step mid-run")
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    took = time.monotonic() - cut_at
    print(f"local set: cut to set end {took:.1f} s (grace {GRACE:.0f} s); re-sent {resent(s)}")
    results = js.results()
    before = [results.get_counts(k) for k in range(n)]
    for k, counts in enumerate(before):
        assert dominant(counts) == expected(k % 8), (k, counts)
    assert "ready." in b.output() and b.proc.poll() is None

    back = heal_and_wait(s, host_a, a)
    time.sleep(2 * GRACE)  # whatever the healed host had in flight lands now
    print(f"local set: {a.name} heard again {back:.1f} s after healing")
    again = JobManager().retrieve_job_set(js.job_set_id())
    assert again.wait(timeout=10) is JobSetStatus.DONE
    assert again.statuses() == [JobStatus.DONE] * (n // 2)
    assert [again.results().get_counts(k) for k in range(n)] == before

    # Recovered means working: with the other host gone, the healed one alone runs a new set.
    b.kill()
    alone = JobManager().run([basis_state(k, name=f"after{k}") for k in range(4)], backend="aer_simulator",
                             max_experiments_per_job=1, shots=32)
    assert alone.wait(timeout=FINISH) is JobSetStatus.DONE, alone.report()
    assert {j.started_by for j in jobs_of(alone)} == {a.name}


def remote_set_cut(s: Site, holds: Callable[[JobRecord, WorkerProcess], bool], what: str) -> None:
    """Run 12 circuits in 6 jobs on the emulator, cut host A when ``holds`` says it holds a job,
    let the set finish on host B, heal, and check: one post per job tag, the same right results."""
    (host_a, _), (a, b) = s.hosts, s.workers
    assert s.emulator is not None
    n, size = 12, 2
    js = JobManager().run([basis_state(k % 32, n=5, name=f"k{k}") for k in range(n)], backend="ibm_manila",
                          max_experiments_per_job=size, shots=100)
    cut_at = cut_while(host_a, js, lambda j: holds(j, a), f"{a.name} to hold {what}")
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    took = time.monotonic() - cut_at
    print(f"remote set, cut holding {what}: cut to set end {took:.1f} s (grace {GRACE:.0f} s); re-sent {resent(s)}")
    results = js.results()
    before = [results.get_counts(k) for k in range(n)]
    for k, counts in enumerate(before):
        assert dominant(counts) == expected(k, n=5), (k, counts)
    assert "ready." in b.output() and b.proc.poll() is None

    back = heal_and_wait(s, host_a, a)
    time.sleep(2 * GRACE + 2.0)  # a post the healed host had in flight would reach the service now
    print(f"remote set, cut holding {what}: {a.name} heard again {back:.1f} s after healing")
    posts = s.emulator.stats()["posts_by_tag"]
    sid = js.job_set_id()
    assert {i: posts.get(f"qjm:{sid}:{i}", 0) for i in range(n // size)} == {i: 1 for i in range(n // size)}, posts
    again = JobManager().retrieve_job_set(sid)
    assert again.wait(timeout=10) is JobSetStatus.DONE
    assert [again.results().get_counts(k) for k in range(n)] == before


REMOTE = {"emulator": {"job_seconds": 2.0}, "QJM_MAX_PENDING_JOBS": "8", "QJM_MAX_POLL_INTERVAL": "1"}


def test_remote_set_finishes_on_the_other_host_without_a_second_post(site: Callable[..., Site]) -> None:
    """Cut while the host holds a job it posted (SUBMITTED): its polls are lost, not its posts."""
    remote_set_cut(site(**REMOTE), lambda j, a: j.started_by == a.name and j.status is JobStatus.SUBMITTED,
                   "a posted job")


def test_remote_host_cut_while_posting_posts_nothing_twice(site: Callable[..., Site]) -> None:
    """Cut while the host is inside a post (begun, no remote id yet): the worst moment for
    exactly-once, since the host is not dead and its request may still reach the service."""
    remote_set_cut(site(**REMOTE), lambda j, a: j.started_by == a.name and j.post_attempted is not None
                   and not j.remote_id and not j.status.final, "a job it is posting")


def service_status(url: str, job_id: str) -> str:
    """A remote job's status as the service reports it."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/v1/jobs/{job_id}", timeout=5) as resp:
        return str(json.load(resp)["status"])


def test_remote_host_cut_while_posting_and_healed_mid_run_posts_nothing_twice(site: Callable[..., Site]) -> None:
    """A short outage: cut while the host is inside a post, heal as soon as the other host has
    posted that job again, while the set still runs (its jobs take 20 s on the service, so
    the batch is still open when the healed host's connections come back). The cut host was
    never dead, only silent: whatever it was doing goes on once the link is back."""
    s = site(**{**REMOTE, "emulator": {"job_seconds": 20.0}})
    host_a, a = s.hosts[0], s.workers[0]
    assert s.emulator is not None
    n, size = 12, 2
    js = JobManager().run([basis_state(k % 32, n=5, name=f"k{k}") for k in range(n)], backend="ibm_manila",
                          max_experiments_per_job=size, shots=100)
    posting: list[int] = []

    def a_is_posting(j: JobRecord) -> bool:
        """The post has begun (recorded just before the client builds and sends it, which takes
        a few hundred ms): cut now, the POST has not left the host."""
        if j.started_by == a.name and j.post_attempted is not None and not j.remote_id and not j.status.final:
            posting.append(j.index)
            return True
        return False

    cut_at = cut_while(host_a, js, a_is_posting, "a job it is posting", interval=0.002)
    victim = posting[0]
    wait_for(lambda: js._store.job(js.job_set_id(), victim).remote_id, FINISH, f"job {victim} to be posted again",
             interval=0.05)
    print(f"remote set, healed mid-run: job {victim} posted again {time.monotonic() - cut_at:.1f} s after the cut")
    healed = time.time()
    host_a.heal()
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    print(f"remote set, healed mid-run: cut to set end {time.monotonic() - cut_at:.1f} s; re-sent {resent(s)}")
    wait_for(lambda: heartbeat_after(s, a, healed), RECONNECT, f"{a.name} to be heard again", interval=0.5)
    time.sleep(2 * GRACE)
    results = js.results()
    for k in range(n):
        assert dominant(results.get_counts(k)) == expected(k, n=5), (k, results.get_counts(k))
    # A POST already on the wire when the host was cut arrives when the link heals: a request
    # sent cannot be recalled, so qjm withdraws it (cancels it on the service). What holds is one
    # post per job that stands, and no job posted more than twice.
    stats, sid = s.emulator.stats(), js.job_set_id()
    standing = {i: 0 for i in range(n // size)}
    for job_id, tags in stats["tags_by_job"].items():
        for i in standing:
            if f"qjm:{sid}:{i}" in tags and service_status(s.emulator.url, job_id) != "Cancelled":
                standing[i] += 1
    assert standing == {i: 1 for i in range(n // size)}, stats["posts_by_tag"]
    assert all(stats["posts_by_tag"].get(f"qjm:{sid}:{i}", 0) <= 2 for i in standing), stats["posts_by_tag"]
