"""One job cancelled (``ManagedJob.cancel``) by a client killed right after the job's move, before
it sent the cancel task: the move alone must be enough. Real Redis, real workers; the remote case
through the real client against qjm's emulator."""

from __future__ import annotations

import subprocess
import sys

import pytest
from qiskit.circuit.random import random_circuit

from qjm import JobManager, JobSetStatus, JobStatus
from qjm.lifecycle import JOB_CANCELLED_BY_USER
from qjm.store import keys

from .circuits import basis_state
from .procs import ROOT, wait_for, worker_env, worker_starter
from .test_ibm_job_sets import BACKEND, cluster, dominant, known  # noqa: F401 - cluster is a fixture

pytestmark = pytest.mark.fault

#: Reads a set id from stdin, waits until job ``argv[1]`` of it has its id (posted, or running
#: locally), cancels it, then dies where it would send the cancel task. Started (and done
#: importing) before the set exists, so it is there while the job runs, however slow to start.
KILLED_CLIENT = """
import os, sys, time
import qjm.client.job
from qjm import JobManager
qjm.client.job.enqueue_cancel = lambda *args, **kwargs: os._exit(3)
print("ready", flush=True)
job = JobManager().retrieve_job_set(sys.stdin.readline().strip()).managed_jobs()[int(sys.argv[1])]
while job.status() and job.job_id() is None:
    time.sleep(0.02)
job.cancel()
"""


class KilledClient:
    """A client process that will cancel one job of a set and die before sending its message."""

    def __init__(self, redis_url: str, job: int, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(job)], cwd=ROOT, text=True,
                                     env={**worker_env(redis_url), **(env or {})}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n", self.proc.communicate()

    def cancel_and_die(self, sid: str) -> None:
        _, err = self.proc.communicate(sid + "\n", timeout=120)
        assert self.proc.returncode == 3, err


def test_a_local_job_cancelled_last_by_a_client_killed_before_its_message(server, monkeypatch):
    """Job 0 is done, job 1 runs; the cancel of job 1 makes the set's last job final, but no cancel
    task (which would send the assembly) was sent, and the worker's own end of job 1 moves nothing:
    the reconciler assembles the set."""
    server.client().flushdb()
    monkeypatch.setenv("QJM_REDIS_URL", server.url)
    with worker_starter(server.url, QJM_RECONCILE_GRACE="3") as start:
        start(concurrency=1)  # job 0, then job 1
        client = KilledClient(server.url, 1)
        circuits = [basis_state(k, n=5, name=f"fast{k}") for k in range(2)] + \
            [random_circuit(5, 10, measure=True, seed=s) for s in range(58)]
        js = JobManager().run(circuits, backend="fake_manila", shots=8192, max_experiments_per_job=30,
                              optimization_level=1)
        client.cancel_and_die(js.job_set_id())  # once job 1 runs
        assert js.wait(timeout=120) is JobSetStatus.ERROR, js.report()
    last = 1
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED]
    assert dominant(js.results(partial=True).get_counts(1)) == "00001"
    assert js.managed_jobs()[last].error_message() == JOB_CANCELLED_BY_USER
    assert int(server.client().hget(keys.job_set(js.job_set_id()), "jobs_left")) == 0


def test_a_remote_job_cancelled_by_a_client_killed_before_its_message_is_cancelled_by_its_poll(cluster):  # noqa: F811
    emulator, redis, _ = cluster(worker_env={"QJM_MAX_POLL_INTERVAL": "2"}, job_seconds=20)
    client = KilledClient(redis.url, 1, env={"QISKIT_IBM_URL": emulator.url})
    js = JobManager().run(known(6), backend=BACKEND, max_experiments_per_job=2, shots=100)
    jobs = js.jobs(timeout=120)
    client.cancel_and_die(js.job_set_id())
    wait_for(lambda: emulator.stats()["cancelled"] == 1, 60, "job 1's poll to cancel it on the service")
    assert js.wait(timeout=120) is JobSetStatus.ERROR, js.report()
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    results = js.results(partial=True)
    assert [dominant(results.get_counts(k)) for k in (0, 5)] == ["00000", "00101"]
    stats = emulator.stats()
    assert stats["cancelled"] == 1 and stats["pending"] == 0 and stats["jobs_posted"] == 3
    assert redis.client().hlen(keys.slots(BACKEND)) == 0
    assert jobs[1].job_id() and js.managed_jobs()[1].status() == JobStatus.CANCELLED
