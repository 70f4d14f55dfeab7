"""A set always finishes: lost messages, a client killed mid-run, Redis killed and restarted from
its append-only file, workers SIGKILLed mid-step. Real Redis, real worker processes.

The visibility timeout stays at its default (an hour), so what brings the work back within the
test is the reconciler (``QJM_RECONCILE_GRACE`` of a few seconds), not the broker's redelivery.
Run them K times in a row with ``make soak``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from qiskit.circuit.random import random_circuit

from qjm import JobManager, JobSetStatus, JobStatus, ManagedJobSet
from qjm.config import Settings
from qjm.engine.dispatch import client_app
from qjm.ops.cluster import EmulatorProcess
from qjm.store import keys

from .circuits import basis_state, expected
from .procs import ROOT, RedisServer, Worker, wait_for, worker_env, worker_starter

pytestmark = pytest.mark.fault

GRACE = 3.0
ENV = {"QJM_RECONCILE_GRACE": str(GRACE)}
#: A set finishes within grace + a reconciler tick + its own remaining work after the fault;
#: the tests give it this long (and assert the result, not the time: speed lives in the bench).
FINISH = 120


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def workers(redis: RedisServer) -> Iterator[Callable[..., Worker]]:
    with worker_starter(redis.url, **ENV) as start:
        yield start


def heard_again_or_replaced(redis: RedisServer, worker: Worker, replace: Callable[[], object]) -> None:
    """After Redis came back, a worker must be heard again (its reconciler heartbeat, and an
    answer to a ping through the broker) within 15 s, or it is replaced, as a liveness probe and a
    supervisor would: Celery's worker sometimes exits, or wedges, when its broker
    dies under it (kombu raises AttributeError restoring unacknowledged messages on a dead
    connection)."""
    back = time.time()
    control = client_app(Settings(redis_url=redis.url)).control

    def heard() -> bool:
        """Its timer renews the heartbeat, and its consumer answers a ping through the broker
        (``celery inspect ping``): a consumer can wedge while the timer still ticks."""
        beat = redis.client().get(keys.worker_alive(worker.name))
        if beat is None or float(beat) <= back:
            return False
        try:
            return bool(control.ping(destination=[worker.name], timeout=1.0))
        except Exception:  # noqa: BLE001 - no answer yet
            return False

    try:
        wait_for(heard, 15, f"{worker.name} to be heard again", interval=0.2)
    except TimeoutError:
        worker.kill()
        replace()


def known(n: int) -> list:
    return [basis_state(k % 8, name=f"k{k}") for k in range(n)]


def assert_right(js: ManagedJobSet, n: int) -> None:
    """Every experiment at its global index, with the one outcome it can have."""
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    results = js.results()
    for k in range(n):
        counts = results.get_counts(k)
        assert max(counts, key=counts.get) == expected(k % 8), (k, counts)


def slow(n: int, seed: int = 0) -> list:
    """Circuits that take a noticeable time to transpile at level 3, so a step can be caught."""
    return [random_circuit(5, 12, measure=True, seed=seed + k) for k in range(n)]


def resent(redis: RedisServer) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in redis.client().hgetall("qjm:metrics:resent").items()}


def test_lost_queued_messages(redis, workers):
    workers()
    js = JobManager(redis.url).run(known(40), backend="fake_manila", max_experiments_per_job=2, shots=64)
    client = redis.client()
    wait_for(lambda: client.llen("qjm.cpu") > 0, 30, "queued messages")
    client.delete("qjm.cpu", "qjm.io")  # a purge, or a lost Redis write
    assert_right(js, 40)
    assert sum(resent(redis).values()) > 0


def test_lost_unacknowledged_messages(redis, workers):
    victim = workers(concurrency=1)
    js = JobManager(redis.url).run(slow(12), backend="fake_manila", max_experiments_per_job=2, shots=64,
                                   optimization_level=3)
    client = redis.client()
    wait_for(lambda: client.hlen("unacked") > 0, 60, "a worker to hold messages")
    victim.kill()  # it held them unacknowledged; then they are lost from the broker too
    client.delete("unacked", "unacked_index", "unacked_mutex")
    workers()
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    assert len(js.results().combine_results().results) == 12


def test_client_killed_between_writing_and_enqueuing(redis, workers):
    workers()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import qjm.client.manager
        from tests.circuits import basis_state
        qjm.client.manager.enqueue_job_set = lambda *a, **k: os._exit(9)  # dies right after the write
        qjm.client.manager.JobManager({redis.url!r}).run([basis_state(k % 8, name=f"k{{k}}") for k in range(6)],
                                                  backend="aer_simulator", max_experiments_per_job=2, shots=32)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=worker_env(redis.url), cwd=ROOT, timeout=120)
    assert done.returncode == 9
    [js] = JobManager(redis.url).job_sets()
    assert_right(js, 6)
    assert resent(redis) == {"transpile": 3}


@pytest.mark.parametrize("backend", ["aer_simulator", "fake_manila"])
def test_redis_killed_and_restarted_from_its_aof(redis, workers, backend):
    worker = workers()
    js = JobManager(redis.url).run(known(30), backend=backend, max_experiments_per_job=1, shots=64)
    wait_for(lambda: JobStatus.DONE in js.statuses(), 60, "the first job to finish")
    redis.kill()
    time.sleep(1.0)
    redis.start()  # same port, same directory: it replays its append-only file
    heard_again_or_replaced(redis, worker, workers)
    assert_right(js, 30)


@pytest.mark.parametrize("step", [JobStatus.TRANSPILING, JobStatus.RUNNING])
def test_worker_killed_mid_step(redis, workers, step):
    victim = workers(concurrency=2)
    js = JobManager(redis.url).run(slow(16, seed=100), backend="fake_manila", max_experiments_per_job=2,
                                   shots=2048, optimization_level=3)
    wait_for(lambda: step in js.statuses(), 60, f"a job in {step.value}", interval=0.01)
    victim.kill()
    workers(concurrency=2)
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    assert len(js.results().combine_results().results) == 16
    assert sum(resent(redis).values()) > 0


def test_worker_killed_mid_message_of_small_jobs(redis, workers):
    """Small local jobs share a message (96 one-circuit jobs: three to a message). A worker killed
    after the first job of a message, with the second under way and the third not begun, leaves
    the message's other jobs to the reconciler: each ends once, with its result."""
    victim = workers(concurrency=2)
    n = 96
    js = JobManager(redis.url).run(slow(n, seed=300), backend="fake_manila", max_experiments_per_job=1,
                                   shots=256, optimization_level=3)
    under_way = (JobStatus.TRANSPILING, JobStatus.RUNNING)

    def mid_message() -> bool:
        s = js.statuses()
        return any(s[i] is JobStatus.DONE and s[i + 1] in under_way and s[i + 2] is JobStatus.QUEUED
                   for i in range(0, n, 3))

    wait_for(mid_message, 60, "a message with one job done, one under way and one not begun", interval=0.005)
    victim.kill()
    workers(concurrency=2)
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    assert len(js.results().combine_results().results) == n
    assert resent(redis).get("transpile", 0) >= 1


def test_lost_assembly_message(redis, workers):
    workers(queues="qjm.cpu")  # local jobs run to the end; nobody takes the assembly from qjm.io
    js = JobManager(redis.url).run(known(6), backend="aer_simulator", max_experiments_per_job=2, shots=32)
    wait_for(lambda: set(js.statuses()) == {JobStatus.DONE}, 60, "every job to finish")
    wait_for(lambda: redis.client().llen("qjm.io") > 0, 30, "the assembly message")
    redis.client().delete("qjm.io")
    workers(queues="qjm.io")
    assert_right(js, 6)


def test_lost_message_that_sends_a_large_sets_jobs(redis, workers):
    """A set of more than 32 jobs is handed to a worker in one message; losing it costs a grace."""
    workers(queues="qjm.cpu")  # nobody takes qjm.send_jobs from qjm.io
    js = JobManager(redis.url).run(known(40), backend="aer_simulator", max_experiments_per_job=1, shots=32)
    wait_for(lambda: redis.client().llen("qjm.io") > 0, 30, "the send_jobs message")
    redis.client().delete("qjm.io")
    workers(queues="qjm.io")  # for the assembly
    assert_right(js, 40)
    assert resent(redis) == {"transpile": 40}


def test_redis_killed_and_restarted_mid_remote_set(redis, monkeypatch):
    """The same on IBM Quantum (the emulator): the set ends right, with one post per attempt."""
    emulator = EmulatorProcess(job_seconds=1.0, pending_limit=3).wait_ready()
    env = {**ENV, "QISKIT_IBM_URL": emulator.url}
    monkeypatch.setenv("QISKIT_IBM_URL", emulator.url)  # the client checks the backend too
    worker = Worker(redis.url, concurrency=2, **env).wait_ready()
    spare: list[Worker] = []
    try:
        js = JobManager(redis.url).run([basis_state(k % 32, n=5, name=f"k{k}") for k in range(10)],
                                       backend="ibm_manila", max_experiments_per_job=1, shots=100)
        wait_for(lambda: JobStatus.DONE in js.statuses(), 120, "the first job to finish")
        redis.kill()
        time.sleep(1.0)
        redis.start()
        heard_again_or_replaced(redis, worker, lambda: spare.append(Worker(redis.url, concurrency=2, **env).wait_ready()))
        try:
            assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
        except BaseException:
            for w in [worker, *spare]:
                print(f"--- {w.name} ({w.log})\n" + "\n".join(
                    line for line in w.output().splitlines() if "WARNING/" in line or "ERROR/" in line)[-5000:])
            raise
        results = js.results()
        for k in range(10):
            counts = results.get_counts(k)
            assert max(counts, key=counts.get) == format(k % 32, "05b"), (k, counts)
        posts, sid = emulator.stats()["posts_by_tag"], js.job_set_id()
        for i in range(10):
            attempt = int(redis.client().hget(keys.job(sid, i), "attempt") or 1)
            assert [posts.get(f"qjm:{sid}:{i}:a{a}") for a in range(1, attempt + 1)] == [1] * attempt
    finally:
        for w in [worker, *spare]:
            w.kill()
            w.stop()
        emulator.stop()
