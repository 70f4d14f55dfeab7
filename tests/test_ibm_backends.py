"""One set over several emulated devices through the real client: placement by queue, a device
in maintenance skipped, a device brought back taken up again (``qjm.backends``)."""

from __future__ import annotations

import json
import urllib.request

from qjm import JobStatus
from qjm.cluster import wait_for

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
