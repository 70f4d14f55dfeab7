"""One set over several emulated devices through the real client: placement by queue, a device
in maintenance skipped, a device brought back taken up again (``qjm.backends``)."""

from __future__ import annotations

import json
import urllib.request

from qjm import JobStatus
from qjm.ops.cluster import wait_for

from .ops_fixtures import env_for, qjm
from .test_ibm_job_sets import assert_posted_once, cluster, dominant, known  # noqa: F401 - the fixture

DEVICES = ["ibm_manila", "ibm_lima", "ibm_quito"]


def set_state(emulator, name: str, status: str) -> None:
    req = urllib.request.Request(f"{emulator.url}/emulator/backends/{name}", method="POST",
                                 data=json.dumps({"status": status}).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def test_a_set_over_three_devices_skips_a_busy_and_an_offline_one_and_takes_it_up_when_back(cluster, monkeypatch):  # noqa: F811
    monkeypatch.setenv("QJM_BACKENDS_CACHE_SECONDS", "0.5")
    emulator, _, _ = cluster(workers=1, worker_env={"QJM_BACKENDS_CACHE_SECONDS": "0.5"}, job_seconds=0.4, serial=True,
                             background=(("ibm_lima", 400),), offline=("ibm_quito",))
    from qjm import JobManager

    jm = JobManager()
    listed = {b.name: b for b in jm.backends(operational=None, simulator=False)}
    assert not listed["ibm_quito"].operational and listed["ibm_lima"].pending_jobs > 100
    assert jm.least_busy(filters=lambda b: b.name in DEVICES).name == "ibm_manila"

    circuits = known(16)
    js = jm.run(circuits, backend=DEVICES, max_experiments_per_job=1, shots=256)
    wait_for(lambda: sum(s is JobStatus.DONE for s in js.statuses()) >= 3, 120, "three jobs done")
    assert emulator.stats()["jobs_posted_by_backend"].get("ibm_quito", 0) == 0  # offline: nothing posted there
    set_state(emulator, "ibm_quito", "online")
    results = js.results(timeout=300)
    assert js.statuses() == [JobStatus.DONE] * 16
    for k in range(16):
        assert dominant(results.get_counts(k)) == format(k % 32, "05b"), k
    stats = emulator.stats()
    assert_posted_once(emulator, js, 16)
    assert stats["jobs_posted_by_backend"].get("ibm_lima", 0) == 0  # 400 other users' jobs ahead
    assert stats["jobs_posted_by_backend"].get("ibm_quito", 0) > 0  # back online, taken up
    assert all(n <= 3 for n in stats["max_pending_by_backend"].values())
    assert set(js.backend_names()) == {"ibm_manila", "ibm_quito"}
    assert "jobs per backend: ibm_manila" in js.report()


def test_qjm_backends_lists_the_devices_with_their_queues(cluster):  # noqa: F811
    """``qjm backends`` as a user runs it, against the emulated service: other users' jobs in the
    queue column, a device in maintenance offline (and left out by --operational), qjm's limit."""
    emulator, redis, _ = cluster(workers=0, job_seconds=60, serial=True, background=(("ibm_lima", 4),),
                                 offline=("ibm_quito",))
    env = env_for(redis.url, QISKIT_IBM_URL=emulator.url)
    listed = qjm("backends", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    by_name = {b["name"]: b for b in json.loads(listed.stdout)}
    assert by_name["fake_manila"]["num_qubits"] == 5 and by_name["fake_manila"]["local"]
    lima, quito = by_name["ibm_lima"], by_name["ibm_quito"]
    assert (lima["pending_jobs"], lima["operational"], lima["in_flight"], lima["job_limit"]) == (4, True, 0, 3)
    assert lima["remaining_jobs_count"] == 3
    assert not quito["operational"] and quito["status_message"].startswith("maintenance")

    table = qjm("backends", "--operational", "--min-qubits", "5", env=env)
    assert table.returncode == 0, table.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in table.stdout.splitlines() if line.startswith("│")}
    assert rows["ibm_lima"] == ["5", "online", "4", "0", "3"]
    assert rows["fake_manila"] == ["5", "online", "-", "-", "-"]
    assert "ibm_quito" not in rows and "fake_armonk" not in rows  # offline; one qubit
    assert all(int(cells[0]) >= 5 for cells in rows.values())


def test_a_set_whose_devices_are_all_offline_waits_visibly_and_is_listed_under_what_it_used(cluster, monkeypatch):  # noqa: F811
    """Both devices of a set in maintenance: nothing is placed, `qjm status` says the set waits
    for one to be online; one comes back and runs every job. The set is then found under that
    device, never under the one that took no job."""
    monkeypatch.setenv("QJM_BACKENDS_CACHE_SECONDS", "0.5")
    emulator, redis, _ = cluster(workers=1, worker_env={"QJM_BACKENDS_CACHE_SECONDS": "0.5"}, job_seconds=0.3,
                                 serial=True, offline=("ibm_manila", "ibm_quito"))
    from qjm import JobManager

    jm = JobManager()
    env = env_for(redis.url, QISKIT_IBM_URL=emulator.url)
    js = jm.run(known(4), backend=["ibm_manila", "ibm_quito"], max_experiments_per_job=1, shots=128)
    sid = js.job_set_id()
    wait_for(lambda: "no backend of the set is online" in js.report(detailed=False), 60, "the set to say it waits")
    status = qjm("status", sid, "--brief", env=env)
    assert status.returncode == 0, status.stderr
    assert "Waiting: no backend of the set is online (ibm_manila: maintenance" in status.stdout, status.stdout
    assert "jobs per backend: ibm_manila 0, ibm_quito 0, not placed 4" in status.stdout, status.stdout
    assert sid not in [s.job_set_id() for s in jm.job_sets(backend="ibm_manila")], "no job placed there yet"

    set_state(emulator, "ibm_manila", "online")
    js.results(timeout=120)
    assert js.statuses() == [JobStatus.DONE] * 4 and js.backend_names() == ["ibm_manila"]
    assert emulator.stats()["jobs_posted_by_backend"] == {"ibm_manila": 4}
    assert [s.job_set_id() for s in jm.job_sets(backend="ibm_manila")] == [sid]
    assert jm.job_sets(backend="ibm_quito") == []
    status = qjm("status", sid, env=env)
    assert "jobs per backend: ibm_manila 4, ibm_quito 0" in status.stdout and "Waiting" not in status.stdout
    assert status.stdout.count("\n    backend: ibm_manila\n") == 4, "each job's block names its backend"
    listed = qjm("list", "--backend", "ibm_quito", env=env)
    assert sid not in listed.stdout and "no job sets match" in listed.stderr


def test_queue_info_places_a_queued_job_behind_the_device_queue_and_dates_its_start(cluster):  # noqa: F811
    """The seed's ``job.queue_info()`` through the real client, on a device that runs its queue
    in turn: of three jobs posted together at least two wait, each with jobs ahead of it and a
    dated start (the device's pace is known from an earlier job there). A finished or a local job
    waits on no queue. (The dates are qjm's estimate: two posts racing from two worker processes
    reach the service in either order, so they are not checked against the service's order.)"""
    emulator, _, _ = cluster(workers=1, job_seconds=3.0, serial=True)
    from qjm import JobManager

    jm = JobManager()
    local = jm.run(known(1), backend="fake_manila", shots=64)
    # One job first: the worker then holds the device's target (the set's posts follow each other
    # closely), and its end gives the device's pace.
    jm.run(known(1), backend="ibm_lima", shots=64).results(timeout=120)
    js = jm.run(known(5), backend="ibm_lima", max_experiments_per_job=1, shots=64)
    wait_for(lambda: sum(bool(job.job_id()) for job in js.jobs(wait=False)) >= 3, 60, "three jobs posted")
    infos = {k: job.queue_info() for k, job in enumerate(js.jobs(wait=False))}
    queued = {k: info for k, info in infos.items() if info is not None}
    assert len(queued) >= 2, f"jobs of 3 s run one at a time: of three posts at least two wait: {infos}"
    assert all(info.backend == "ibm_lima" and info.pace and info.pace > 0 for info in queued.values()), queued
    assert all(info.estimated_start_time is not None for info in queued.values()), queued
    assert max(info.position for info in queued.values()) >= 1, "the later posts stand behind the earlier"

    js.results(timeout=180)
    assert [job.queue_info() for job in js.jobs()] == [None] * 5, "a finished job waits on no queue"
    local.results(timeout=120)
    assert local.jobs()[0].queue_info() is None

