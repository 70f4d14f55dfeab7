"""Managing job sets end to end: real Redis, real Celery workers, real transpilation and simulation.
The IBM side (retries, retags, deleting a running remote set) is in ``tests/test_ibm_management.py``."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from qjm import JobSetStatus, JobStatus
from qjm.errors import JobSetNotFoundError, JobSetRunningError
from qjm.store import keys

from .circuits import basis_state, expected, untranslatable
from .ops_fixtures import QJM, env_for, qjm
from .procs import wait_for

SHOTS = 32


def set_keys(jm, sid: str) -> list[bytes]:
    return list(jm.store.r.scan_iter(match=f"qjm:{{{sid}}}:*"))


def test_rerun_failed_runs_the_cancelled_jobs_again_under_the_same_id(jm, worker):
    circuits = [basis_state(k % 8, name=f"r{k}") for k in range(16)]
    js = jm.run(circuits, backend="aer_simulator", name="rerun-me", shots=SHOTS, max_experiments_per_job=1)
    js.cancel()
    assert js.wait(timeout=120) is JobSetStatus.CANCELLED
    before = js.statuses()
    assert JobStatus.CANCELLED in before
    done_before = [i for i, s in enumerate(before) if s is JobStatus.DONE]

    worker.signal_group(signal.SIGSTOP)  # the workers hold still, so the re-run cannot end before it is looked at
    try:
        rerun = js.rerun_failed()
        assert [j.index for j in rerun] == [i for i, s in enumerate(before) if s is JobStatus.CANCELLED]
        assert js.status() is JobSetStatus.RUNNING  # at once, so results() waits for the new outcome
        with pytest.raises(JobSetRunningError, match="still RUNNING"):
            js.rerun_failed()
    finally:
        worker.signal_group(signal.SIGCONT)
    results = js.results(timeout=120)
    assert results.success and js.status() is JobSetStatus.DONE
    assert [results.get_counts(k) for k in range(16)] == [{expected(k % 8): SHOTS} for k in range(16)]
    for job in js.jobs():
        if job.index in done_before:
            assert job.attempt() == 1 and job.history() == []
        else:
            assert job.attempt() == 2
            assert job.history()[0]["kind"] == "rerun" and job.history()[0]["error"] == "cancelled by user"
    report = js.report()
    assert "attempt 1 ended" in report and "rerun followed" in report
    assert js.rerun_failed() == []  # nothing failed any more
    assert [s.job_set_id() for s in jm.job_sets(name="rerun-me", status="DONE")] == [js.job_set_id()]


def test_rerun_of_a_job_that_fails_again_keeps_its_history_and_the_other_results(jm):
    circuits = [basis_state(k, name=f"ok{k}") for k in range(4)] + [untranslatable()]
    js = jm.run(circuits, backend="aer_simulator", shots=SHOTS, max_experiments_per_job=2, max_retries=3)
    assert js.wait(timeout=120) is JobSetStatus.ERROR
    (job,) = js.rerun_failed()
    assert job.index == 2
    assert js.wait(timeout=120) is JobSetStatus.ERROR
    assert job.attempt() == 2  # a circuit that fails to transpile is not retried by itself
    assert "transpilation failed" in job.history()[0]["error"] and "transpilation failed" in job.error_message()
    partial = js.results(partial=True)
    assert [partial.get_counts(k) for k in range(4)] == [{expected(k): SHOTS} for k in range(4)]
    steps = job.time_per_step()
    assert sorted(steps) == [1, 2]
    assert list(steps[1]) == ["QUEUED", "TRANSPILING", "ERROR"] and list(steps[2])[-1] == "ERROR"
    assert steps[1]["QUEUED"] == job.creation_date() <= steps[1]["ERROR"] <= min(steps[2].values())


def test_time_per_step_of_a_done_job(jm):
    js = jm.run([basis_state(3)], backend="aer_simulator", shots=SHOTS)
    js.wait(timeout=120)
    (job,) = js.jobs()
    steps = job.time_per_step()[1]
    assert list(steps) == ["QUEUED", "TRANSPILING", "RUNNING", "DONE"]  # a local job runs in its transpile task
    assert list(steps.values()) == sorted(steps.values())


def test_delete_a_finished_and_a_running_set(jm):
    done = jm.run([basis_state(1)], backend="aer_simulator", name="to-delete", shots=SHOTS)
    done.wait(timeout=120)
    running = jm.run([basis_state(k % 8) for k in range(30)], backend="aer_simulator", name="to-delete",
                     shots=SHOTS, max_experiments_per_job=1)
    for js in (done, running):
        jm.delete_job_set(js.job_set_id())
    assert jm.job_sets(name="to-delete") == []
    for js in (done, running):
        sid = js.job_set_id()
        with pytest.raises(JobSetNotFoundError, match="was deleted"):
            jm.retrieve_job_set(sid)
        with pytest.raises(JobSetNotFoundError, match="was deleted"):
            jm.delete_job_set(sid)
        # In-flight tasks end quietly: nothing of the set is left but its tombstone (and nothing
        # they touch afterwards comes back without an expiry).
        gone = [keys.tombstone(sid).encode()]
        try:
            wait_for(lambda sid=sid, gone=gone: set_keys(jm, sid) == gone, 60, "the set's keys to go")
        except TimeoutError:
            pass
        assert set_keys(jm, sid) == gone  # names what was left
    time.sleep(1.0)  # let any late task of the running set try its luck
    assert all(jm.store.r.ttl(k) > 0 for k in set_keys(jm, running.job_set_id()))
    assert jm.store.r.hlen(keys.slots("aer_simulator")) == 0


def test_cli_manages_sets(jm, redis_server):
    env = env_for(redis_server.url)
    js = jm.run([basis_state(2), untranslatable()], backend="aer_simulator", name="cli-managed", shots=SHOTS,
                max_experiments_per_job=1, job_tags=["one"])
    js.wait(timeout=120)
    sid = js.job_set_id()
    assert "cli-renamed" in qjm("rename", sid, "cli-renamed", env=env).stdout
    tagged = qjm("tag", sid, "--add", "two", "--remove", "one", env=env)
    assert tagged.returncode == 0 and "two" in tagged.stdout
    listed = qjm("list", "--name", "cli-renamed", "--tag", "two", "--status", "error", "--limit", "5", env=env)
    assert sid in listed.stdout and "1/2" in listed.stdout
    refused = qjm("tag", sid, "--add", "qjm:mine", env=env)
    assert refused.returncode == 1 and "qjm's own" in refused.stderr
    rerun = qjm("rerun", sid, env=env)
    assert rerun.returncode == 0 and "re-running 1 job(s)" in rerun.stdout and "1 (attempt 2)" in rerun.stdout
    js.wait(timeout=120)
    kept = subprocess.run([QJM, "delete", sid], env=env, input="n\n", capture_output=True, text=True, timeout=120)
    assert kept.returncode == 1 and jm.retrieve_job_set(sid).name() == "cli-renamed"
    assert qjm("delete", sid, "--yes", env=env).returncode == 0
    assert sid not in qjm("list", env=env).stdout
