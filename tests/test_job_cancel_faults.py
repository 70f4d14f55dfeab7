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

#: Waits until job ``argv[2]`` of set ``argv[1]`` has its id (posted, or running locally), cancels
#: it, then dies where it would send the cancel task.
KILLED_CLIENT = """
import os, sys, time
import qjm.job
from qjm import JobManager
qjm.job.enqueue_cancel = lambda *args, **kwargs: os._exit(3)
job = JobManager().retrieve_job_set(sys.argv[1]).managed_jobs()[int(sys.argv[2])]
while job.status() and job.job_id() is None:
    time.sleep(0.02)
job.cancel()
"""


def cancel_and_die(redis_url: str, sid: str, job: int, env: dict[str, str] | None = None) -> None:
    out = subprocess.run([sys.executable, "-c", KILLED_CLIENT, sid, str(job)], cwd=ROOT,
                         env={**worker_env(redis_url), **(env or {})}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr


def test_a_local_job_cancelled_last_by_a_client_killed_before_its_message(server, monkeypatch):
    """Job 0 is done, job 1 runs; the cancel of job 1 makes the set's last job final, but no cancel
    task (which would send the assembly) was sent, and the worker's own end of job 1 moves nothing:
    the reconciler assembles the set."""
    server.client().flushdb()
    monkeypatch.setenv("QJM_REDIS_URL", server.url)
    with worker_starter(server.url, QJM_RECONCILE_GRACE="3") as start:
        start(concurrency=1)  # job 0, then job 1
        circuits = [basis_state(k, n=5, name=f"fast{k}") for k in range(2)] + \
            [random_circuit(5, 10, measure=True, seed=s) for s in range(58)]
        js = JobManager().run(circuits, backend="fake_manila", shots=8192, max_experiments_per_job=30,
                              optimization_level=1)
        cancel_and_die(server.url, js.job_set_id(), 1)  # once job 1 runs
        assert js.wait(timeout=120) is JobSetStatus.ERROR, js.report()
    last = 1
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED]
    assert dominant(js.results(partial=True).get_counts(1)) == "00001"
    assert js.managed_jobs()[last].error_message() == JOB_CANCELLED_BY_USER
    assert int(server.client().hget(keys.job_set(js.job_set_id()), "jobs_left")) == 0


def test_a_remote_job_cancelled_by_a_client_killed_before_its_message_is_cancelled_by_its_poll(cluster):  # noqa: F811
    emulator, redis, _ = cluster(worker_env={"QJM_MAX_POLL_INTERVAL": "2"}, job_seconds=20)
    js = JobManager().run(known(6), backend=BACKEND, max_experiments_per_job=2, shots=100)
    jobs = js.jobs(timeout=120)
    cancel_and_die(redis.url, js.job_set_id(), 1, env={"QISKIT_IBM_URL": emulator.url})
    wait_for(lambda: emulator.stats()["cancelled"] == 1, 60, "job 1's poll to cancel it on the service")
    assert js.wait(timeout=120) is JobSetStatus.ERROR, js.report()
    assert js.statuses() == [JobStatus.DONE, JobStatus.CANCELLED, JobStatus.DONE]
    results = js.results(partial=True)
    assert [dominant(results.get_counts(k)) for k in (0, 5)] == ["00000", "00101"]
    stats = emulator.stats()
    assert stats["cancelled"] == 1 and stats["pending"] == 0 and stats["jobs_posted"] == 3
    assert redis.client().hlen(keys.slots(BACKEND)) == 0
    assert jobs[1].job_id() and js.managed_jobs()[1].status() == JobStatus.CANCELLED
