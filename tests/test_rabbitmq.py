"""RabbitMQ as the broker (``QJM_BROKER_URL=amqp://...``): queue traffic leaves Redis, which keeps
only qjm's state and Celery's results. End to end, faults included: a worker SIGKILLed mid-step,
queued messages lost, Redis killed and restarted under a broker that keeps its messages, and the
broker dropping every connection. Real RabbitMQ (a private vhost per module), Redis and workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from qjm import JobManager, JobSetStatus, JobStatus
from qjm.config import Settings
from qjm.engine.dispatch import queue_length
from qjm.engine.tasks import CPU_QUEUE, IO_QUEUE
from qjm.ops.cluster import EmulatorProcess

from .circuits import basis_state
from .procs import RedisServer, Worker, wait_for, worker_starter
from .rabbitmq import private_vhost, queue_depths, rabbitmqctl, vhost_of
from .test_faults import ENV, FINISH, assert_right, heard_again_or_replaced, known, resent, slow

#: What the Redis broker would keep in Redis: its queues, unacknowledged messages and bindings.
REDIS_BROKER_KEYS = (CPU_QUEUE.encode(), IO_QUEUE.encode(), b"unacked", b"unacked_index", b"unacked_mutex")


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with private_vhost() as url:
        yield url


@pytest.fixture
def redis(broker: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A fresh Redis per test; the client sends to the module's vhost."""
    monkeypatch.setenv("QJM_BROKER_URL", broker)
    server = RedisServer(appendonly=True).start()
    yield server
    server.stop()
    for queue in (CPU_QUEUE, IO_QUEUE):  # what a test left queued must not reach the next one's workers
        try:
            rabbitmqctl("purge_queue", "-p", vhost_of(broker), queue)
        except RuntimeError:
            pass


@pytest.fixture
def workers(redis: RedisServer, broker: str) -> Iterator[Callable[..., Worker]]:
    with worker_starter(redis.url, **ENV, QJM_BROKER_URL=broker) as start:
        yield start


def no_queues_in_redis(redis: RedisServer) -> list[bytes]:
    client = redis.client()
    return [k for k in client.keys("*") if k in REDIS_BROKER_KEYS or k.startswith(b"_kombu")]


def test_a_set_runs_end_to_end_with_its_queues_on_rabbitmq(redis, workers, broker, monkeypatch):
    """Local and remote sets (the remote one through the IBM emulator: submits, countdown polls,
    slot hand-offs), every message through RabbitMQ, none through Redis."""
    emulator = EmulatorProcess(job_seconds=0.5, pending_limit=2).wait_ready()
    monkeypatch.setenv("QISKIT_IBM_URL", emulator.url)
    try:
        workers(QISKIT_IBM_URL=emulator.url, QJM_MAX_PENDING_JOBS="2")
        jm = JobManager(redis.url)
        local = jm.run(known(12), backend="fake_manila", max_experiments_per_job=2, shots=64)
        remote = jm.run([basis_state(k % 32, n=5, name=f"r{k}") for k in range(6)], backend="ibm_manila",
                        max_experiments_per_job=1, shots=64)
        assert_right(local, 12)
        assert remote.wait(timeout=FINISH) is JobSetStatus.DONE, remote.report()
        results = remote.results()
        for k in range(6):  # the emulated device is noisy: the prepared state is the likeliest outcome
            counts = results.get_counts(k)
            assert max(counts, key=counts.get) == format(k, "05b"), (k, counts)
        stats = emulator.stats()
        assert stats["max_pending"] <= 2 and stats["jobs_posted"] == 6
    finally:
        emulator.stop()
    assert no_queues_in_redis(redis) == [], "queue traffic went through Redis"
    depths = queue_depths(broker)
    assert {CPU_QUEUE, IO_QUEUE} <= set(depths), f"the queues are not on RabbitMQ: {depths}"
    assert depths[CPU_QUEUE] == depths[IO_QUEUE] == (0, 0), "everything was consumed and acknowledged"
    # The reconciler reads queue lengths through the same broker.
    assert queue_length(Settings(redis_url=redis.url), CPU_QUEUE) == 0


@pytest.mark.fault
def test_worker_killed_mid_step_its_unacknowledged_task_comes_back(redis, workers):
    victim = workers()
    js = JobManager(redis.url).run(slow(16, seed=300), backend="fake_manila", max_experiments_per_job=2,
                                   shots=256, optimization_level=3)
    wait_for(lambda: JobStatus.TRANSPILING in js.statuses(), 60, "a job mid-transpilation", interval=0.01)
    victim.kill()  # RabbitMQ requeues what its dead connection held unacknowledged
    workers()
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    assert len(js.results().combine_results().results) == 16


@pytest.mark.fault
def test_lost_queued_messages_are_sent_again(redis, workers, broker):
    workers(concurrency=1)
    js = JobManager(redis.url).run(slow(20, seed=400), backend="fake_manila", max_experiments_per_job=1,
                                   shots=64, optimization_level=3)
    wait_for(lambda: queue_depths(broker).get(CPU_QUEUE, (0, 0))[0] > 0, 60, "queued messages on RabbitMQ")
    rabbitmqctl("purge_queue", "-p", vhost_of(broker), CPU_QUEUE)  # a purge, or messages lost with a node
    assert js.wait(timeout=FINISH) is JobSetStatus.DONE, js.report()
    assert len(js.results().combine_results().results) == 20
    assert sum(resent(redis).values()) > 0, "the reconciler sent the lost steps again"


@pytest.mark.fault
def test_redis_killed_and_restarted_while_the_broker_keeps_its_messages(redis, workers, broker):
    worker = workers()
    js = JobManager(redis.url).run(known(30), backend="fake_manila", max_experiments_per_job=1, shots=64)
    wait_for(lambda: JobStatus.DONE in js.statuses(), 60, "the first job to finish")
    redis.kill()
    time.sleep(1.0)
    redis.start()  # same port and directory: it replays its append-only file
    heard_again_or_replaced(redis, worker, workers)
    assert_right(js, 30)


@pytest.mark.fault
def test_the_broker_dropping_every_connection_mid_set(redis, workers, broker):
    workers()
    js = JobManager(redis.url).run(known(30), backend="fake_manila", max_experiments_per_job=1, shots=64)
    wait_for(lambda: JobStatus.DONE in js.statuses(), 60, "the first job to finish")
    rabbitmqctl("close_all_connections", "-p", vhost_of(broker), "qjm fault test")
    assert_right(js, 30)
