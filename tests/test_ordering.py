"""Jobs already begun run to their end before new ones begin, on the Redis broker and on RabbitMQ.

A local job is transpiled and simulated by one task, so a worker process that takes a job finishes
it before it takes the next: with one worker process, never more than one job is begun and not
ended. (Were the run a second message, it would queue behind every other job's transpilation, and
the first result would come at the very end.)"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from qjm import JobManager, JobSetStatus, JobStatus

from .circuits import basis_state, expected
from .procs import RedisServer, Worker

AMQP = "amqp://guest:guest@127.0.0.1:5672"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request) -> Iterator[str | None]:
    """None for the Redis broker; for RabbitMQ, the URL of a private vhost (skipped without one)."""
    if request.param == "redis":
        yield None
        return
    vhost = f"qjm-test-{uuid.uuid4().hex[:8]}"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or subprocess.run([ctl, "add_vhost", vhost], capture_output=True, timeout=60).returncode:
        pytest.skip("no RabbitMQ to make a private vhost on")
    try:
        subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True, timeout=60)
        yield f"{AMQP}/{vhost}"
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def test_a_begun_job_ends_before_the_next_begins(broker, monkeypatch):
    server = RedisServer().start()
    env = {"QJM_BROKER_URL": broker} if broker else {}
    worker = Worker(server.url, concurrency=1, **env).wait_ready()
    try:
        if broker:
            monkeypatch.setenv("QJM_BROKER_URL", broker)
        jm = JobManager(server.url)
        n_jobs = 6
        js = jm.run([basis_state(k % 8, name=f"o{k}") for k in range(2 * n_jobs)], backend="aer_simulator",
                    shots=16, max_experiments_per_job=2)
        most_begun, seen = 0, set()
        while not js.status().final:  # one worker process: never more than one job begun and not ended
            statuses = jm.store.job_statuses(js.job_set_id(), n_jobs)
            seen.update(statuses)
            most_begun = max(most_begun, sum(s is not JobStatus.QUEUED and not s.final for s in statuses))
            time.sleep(0.005)
        assert most_begun <= 1, f"{most_begun} jobs were begun and unfinished at once (seen: {seen})"
        results = js.results(timeout=120)
        assert js.status() is JobSetStatus.DONE
        assert [results.get_counts(k) for k in range(2 * n_jobs)] == [{expected(k % 8): 16} for k in range(2 * n_jobs)]
    finally:
        worker.stop()
        server.stop()
