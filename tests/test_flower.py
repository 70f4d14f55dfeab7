"""Flower started by ``qjm flower`` with basic auth, watching a real ``qjm worker``, seen by Chromium."""

from __future__ import annotations

import ast
import json

import pytest

from qjm import JobManager, JobSetStatus
from qjm.engine.tasks import ASSEMBLE, CPU_QUEUE, IO_QUEUE, TRANSPILE

from .circuits import basis_state
from .ops_fixtures import QJM, Proc, chromium, ensure_chromium, env_for, http_get, qjm_worker
from .procs import RedisServer, free_port, wait_for

USER, PASSWORD = "ops", "flower-test-pw"
WORKER = "flowertest"


@pytest.fixture(scope="session")
def browser() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def flower():
    """Redis, a worker and Flower; yields (redis url, Flower's base url)."""
    redis_proc = RedisServer().start()
    started: list[Proc] = []
    try:
        started.append(qjm_worker(redis_proc.url, WORKER))
        port = free_port()
        env = env_for(redis_proc.url, QJM_FLOWER_USER=USER, QJM_FLOWER_PASSWORD=PASSWORD)
        started.append(Proc([QJM, "flower", f"--port={port}", "--address=127.0.0.1"], env, "flower"))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(f"{base}/healthcheck")[0] == 200, 180, "Flower to answer", interval=0.2)
        # Flower knows only the events it received: wait until its event receiver has heard the
        # worker's heartbeat, or the first tasks of the set may be sent before it listens.
        wait_for(lambda: WORKER in http_get(f"{base}/workers?json=1", USER, PASSWORD)[1], 60,
                 "Flower to hear the worker's heartbeat", interval=0.3)
        yield redis_proc.url, base
    finally:
        for p in reversed(started):
            p.stop()
        redis_proc.stop()


@pytest.fixture(scope="module")
def job_set_tasks(flower):
    """Runs a two-job set while Flower watches; returns its id and Flower's record of its tasks."""
    redis_url, base = flower
    js = JobManager(redis_url).run([basis_state(k) for k in range(4)], backend="aer_simulator",
                                   max_experiments_per_job=2, shots=16)
    assert js.wait(timeout=120) is JobSetStatus.DONE
    sid = js.job_set_id()

    seen: dict = {}

    def mine() -> dict | None:
        status, body = http_get(f"{base}/api/tasks?limit=1000", USER, PASSWORD, timeout=30)
        assert status == 200, body
        seen.clear()
        seen.update({k: t for k, t in json.loads(body).items() if sid in (t.get("args") or "")})
        done = [t for t in seen.values() if t["state"] == "SUCCESS"]
        return dict(seen) if len(done) == 3 else None  # 2 x transpile (which runs a local job) + assemble

    try:
        return sid, wait_for(mine, 180, "Flower to see every task of the set succeed", interval=0.3)
    except TimeoutError:
        pytest.fail(f"Flower saw only {[(t['name'], t['state']) for t in seen.values()]}")


def test_flower_sees_every_task_with_readable_arguments(job_set_tasks):
    sid, tasks = job_set_tasks
    by_name: dict[str, list[dict]] = {}
    for t in tasks.values():
        by_name.setdefault(t["name"], []).append(t)
    # A local job is transpiled and run by one task: local sets have no submit or poll step.
    assert {n: len(v) for n, v in by_name.items()} == {TRANSPILE: 2, ASSEMBLE: 1}
    for t in tasks.values():
        # Arguments are the set's id and the job index, never circuits.
        assert list(ast.literal_eval(t["args"])) in ([sid, 0], [sid, 1], [sid]), t["args"]
        assert t["sent"] is not None, "sent events are on: Flower knows a task from the moment it is queued"
        assert t["worker"] == f"{WORKER}@localhost"
    assert {t["routing_key"] for t in by_name[TRANSPILE]} == {CPU_QUEUE}
    assert {t["routing_key"] for t in by_name[ASSEMBLE]} == {IO_QUEUE}


def test_flower_api_shows_the_worker_and_needs_auth(flower, job_set_tasks):
    _, base = flower
    assert http_get(f"{base}/api/workers")[0] == 401
    assert http_get(f"{base}/api/workers", USER, "wrong")[0] == 401
    status, body = http_get(f"{base}/api/workers?refresh=1", USER, PASSWORD, timeout=30)
    assert status == 200, body
    workers = json.loads(body)
    assert f"{WORKER}@localhost" in workers
    queues = {q["name"] for q in workers[f"{WORKER}@localhost"]["active_queues"]}
    assert queues == {CPU_QUEUE, IO_QUEUE}
    # Flower's own Prometheus metrics, next to which `qjm metrics` is scraped.
    status, body = http_get(f"{base}/metrics")
    assert status == 200 and f'task="{TRANSPILE}"' in body


def test_tasks_page_in_headless_chromium(flower, job_set_tasks, browser, tmp_path):
    _, base = flower
    sid, tasks = job_set_tasks
    url = base.replace("http://", f"http://{USER}:{PASSWORD}@") + "/tasks"
    # The table is filled by the page's scripts; a second load covers a slow first ajax call.
    dom = ""
    for _ in range(3):
        dom = chromium(browser, url)
        if TRANSPILE in dom:
            break
    assert "Flower" in dom, dom[:2000]
    for name in (TRANSPILE, ASSEMBLE):
        assert f">{name}<" in dom, name
    assert any(uuid in dom for uuid in tasks)
    shot = tmp_path / "flower-tasks.png"
    chromium(browser, url, screenshot=shot)
    assert shot.stat().st_size > 10_000

    # Without credentials the page is refused, not rendered.
    assert TRANSPILE not in chromium(browser, f"{base}/tasks")
