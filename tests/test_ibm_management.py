"""Managing job sets on IBM Quantum through the real qiskit-ibm-runtime client, against qjm's
emulator: automatic retries of transient failures, re-runs, retags reaching the service, and
deleting a running set. Real Redis, real Celery workers; nothing here can reach IBM Quantum."""

from __future__ import annotations

from qjm import JobManager, JobSetStatus, JobStatus
from qjm.store import keys

from .procs import wait_for
from .test_ibm_job_sets import BACKEND, cluster, dominant, known  # noqa: F401 - cluster is a fixture


def posts(emulator, sid: str, i: int) -> dict[int, int]:
    """How often each attempt of job ``i`` was posted, by its attempt tag."""
    by_tag = emulator.stats()["posts_by_tag"]
    return {int(t.rsplit(":a", 1)[1]): n for t, n in by_tag.items() if t.startswith(f"qjm:{sid}:{i}:a")}


def test_transient_failures_are_retried_and_permanent_ones_are_not(cluster):  # noqa: F811
    # Every 3rd post fails: post 3 with 1011 ("retry the action"), post 6 with 1002 (the job is at fault).
    emulator, _, _ = cluster(fail_every=3, fail_codes=[1011, 1002])
    jm = JobManager()
    js = jm.run(known(8), backend=BACKEND, max_experiments_per_job=2, shots=100, max_retries=1,
                job_tags=["sweep-7"])
    results = js.results(timeout=180)  # posts 1-5: the job of post 3 is posted again
    assert [dominant(results.get_counts(k)) for k in range(8)] == [format(k, "05b") for k in range(8)]
    sid = js.job_set_id()
    jobs = js.jobs()
    attempts = [j.attempt() for j in jobs]
    assert sorted(attempts) == [1, 1, 1, 2]
    retried = jobs[attempts.index(2)]
    assert posts(emulator, sid, retried.index) == {1: 1, 2: 1}  # each attempt a post of its own
    (past,) = retried.history()
    assert past["kind"] == "retry" and "Error code 1011" in past["error"]
    steps = retried.time_per_step()
    assert sorted(steps) == [1, 2] and "SUBMITTED" in steps[1] and list(steps[2])[-1] == "DONE"
    assert "retry followed" in js.report()
    # The user's tags travel beside qjm's on every post.
    tags = emulator.stats()["tags_by_job"]
    assert len(tags) == 5 and all(t[:2] == ["sweep-7", f"qjm:{sid}"] for t in tags.values())

    permanent = jm.run(known(2), backend=BACKEND, shots=100, max_retries=3)  # post 6: code 1002
    assert permanent.wait(timeout=180) is JobSetStatus.ERROR
    (job,) = permanent.jobs()
    assert job.attempt() == 1 and "Error code 1002" in job.error_message()
    assert emulator.stats()["failed_by_code"] == {"1011": 1, "1002": 1}

    # The user re-runs what failed: a new attempt (post 7), under the same set id, in a new batch.
    (again,) = permanent.rerun_failed()
    assert again.index == 0 and permanent.status() is JobSetStatus.RUNNING
    results = permanent.results(timeout=180)
    assert [dominant(results.get_counts(k)) for k in range(2)] == ["00000", "00001"]
    assert again.attempt() == 2 and again.history()[0]["kind"] == "rerun"
    assert posts(emulator, permanent.job_set_id(), 0) == {1: 1, 2: 1}
    stats = emulator.stats()
    assert stats["jobs_posted"] == 7 and stats["sessions_created"] == 3 and stats["pending"] == 0
    assert "rerun followed" in permanent.report()


def test_retag_and_rename_reach_the_service_and_the_listing(cluster):  # noqa: F811
    emulator, _, _ = cluster()
    jm = JobManager()
    js = jm.run(known(4), backend=BACKEND, name="before", max_experiments_per_job=2, shots=50, job_tags=["a", "b"])
    assert js.wait(timeout=180) is JobSetStatus.DONE
    sid = js.job_set_id()
    assert js.update_tags(additional_tags=["c"], removal_tags=["a"]) == ["b", "c"]
    js.update_name("after")
    remote = {j.job_id(): j.index for j in js.jobs()}

    def service_tags() -> dict[str, list[str]]:
        # The client sends the new tags as a set: their order is not kept.
        return {rid: sorted(t) for rid, t in emulator.stats()["tags_by_job"].items() if rid in remote}

    expected = {rid: sorted(["b", "c", f"qjm:{sid}", f"qjm:{sid}:{i}", f"qjm:{sid}:{i}:a1"])
                for rid, i in remote.items()}
    wait_for(lambda: service_tags() == expected, 60, "the retag to reach the service")
    assert [s.job_set_id() for s in jm.job_sets(name="after", tags=["c"], backend=BACKEND, status="DONE")] == [sid]
    assert jm.job_sets(tags=["a"]) == [] and jm.job_sets(name="before") == []


def test_deleting_a_running_remote_set_cancels_it_on_the_service(cluster):  # noqa: F811
    emulator, redis, _ = cluster(job_seconds=30)
    jm = JobManager()
    js = jm.run(known(6), backend=BACKEND, name="doomed", max_experiments_per_job=1, shots=50)
    sid = js.job_set_id()
    wait_for(lambda: js.statuses().count(JobStatus.SUBMITTED) + js.statuses().count(JobStatus.RUNNING) >= 3, 60,
             "three jobs to be posted")
    jm.delete_job_set(sid)
    assert jm.job_sets(name="doomed") == []
    wait_for(lambda: list(redis.client().scan_iter(match=f"qjm:{{{sid}}}:*")) == [keys.tombstone(sid).encode()], 60,
             "a worker to cancel the remote jobs and remove the keys")
    stats = emulator.stats()
    assert stats["pending"] == 0 and stats["cancelled"] == stats["jobs_posted"] >= 3
    # The batch is cancelled by whichever of the set's assembly and the deletion claims it first.
    wait_for(lambda: emulator.stats()["sessions_cancelled"] == 1, 30, "the batch to be cancelled")
    assert redis.client().hlen(keys.slots(BACKEND)) == 0 and redis.client().zcard(keys.waiting(BACKEND)) == 0
