"""Code written for the old ``IBMQJobManager`` on IBM Quantum, through the real qiskit-ibm-runtime
client against qjm's emulator: one job cancelled on the service while the others run, jobs() that
waits for every job's id, statuses that compare with Qiskit's. Real Redis, real Celery workers."""

from __future__ import annotations

import re

import pytest
from qiskit.providers import JobStatus as QiskitJobStatus

from qjm import JobManager, JobSetStatus, JobStatus, ResultNotAvailableError
from qjm.lifecycle import JOB_CANCELLED_BY_USER
from qjm.store import keys

from .procs import wait_for
from .test_ibm_job_sets import BACKEND, cluster, dominant, known  # noqa: F401 - cluster is a fixture


def test_one_job_cancelled_on_the_service_while_the_others_run(cluster):  # noqa: F811
    emulator, redis, _ = cluster(job_seconds=20)  # every job pending well after all are posted
    js = JobManager().run(known(6), backend=BACKEND, max_experiments_per_job=2, shots=100)
    jobs = js.jobs(timeout=120)  # the old jobs(): every job posted, each with its id
    assert all(j.job_id() for j in jobs) and [(j.start_index, j.end_index) for j in jobs] == [(0, 1), (2, 3), (4, 5)]
    assert all(s in (QiskitJobStatus.QUEUED, QiskitJobStatus.RUNNING) for s in js.statuses())
    assert jobs[1].cancel() is True
    wait_for(lambda: emulator.stats()["cancelled"] == 1, 60, "the service to cancel job 1")
    assert js.wait(timeout=120) is JobSetStatus.ERROR
    assert js.statuses() == [QiskitJobStatus.DONE, QiskitJobStatus.CANCELLED, QiskitJobStatus.DONE]
    results = js.results(partial=True)
    assert [dominant(results.get_counts(k)) for k in (0, 1, 4, 5)] == [format(k, "05b") for k in (0, 1, 4, 5)]
    with pytest.raises(ResultNotAvailableError,
                       match=re.escape(f"job index 1, job ID {jobs[1].job_id()}: {JOB_CANCELLED_BY_USER}")):
        results.get_counts(3)
    assert "Cancelled jobs: 1 (job index 1)" in js.report(detailed=False)
    detail = js.report().split("job index: 1")[1].split("job index: 2")[0]
    assert "status: CANCELLED" in detail and JOB_CANCELLED_BY_USER in detail
    stats = emulator.stats()
    assert stats["cancelled"] == 1 and stats["pending"] == 0 and stats["jobs_posted"] == 3
    assert stats["sessions_cancelled"] == 0 and stats["sessions_closed"] == 1, "the batch closed; the set went on"
    assert redis.client().hlen(keys.slots(BACKEND)) == 0


def test_a_job_cancelled_while_it_waits_for_a_slot_is_never_posted(cluster):  # noqa: F811
    emulator, redis, _ = cluster(worker_env={"QJM_MAX_PENDING_JOBS": "1"}, job_seconds=3)
    js = JobManager().run(known(3), backend=BACKEND, max_experiments_per_job=1, shots=100)
    waiting = js.managed_jobs()[2]
    assert waiting.job_id() is None and waiting.cancel() is True
    assert js.wait(timeout=120) is JobSetStatus.ERROR
    assert js.statuses() == [JobStatus.DONE, JobStatus.DONE, JobStatus.CANCELLED]
    stats = emulator.stats()
    assert stats["jobs_posted"] == 2 and stats["cancelled"] == 0 and stats["pending"] == 0
    assert not any(tag.startswith(f"qjm:{js.job_set_id()}:2") for tag in stats["posts_by_tag"])
    assert redis.client().hlen(keys.slots(BACKEND)) == 0
