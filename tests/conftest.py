from __future__ import annotations

import pytest

from qjm import JobManager

from .procs import RedisServer, Worker


@pytest.fixture(scope="module")
def server():
    """A Redis of the test module's own (its tests flush it as they need)."""
    s = RedisServer().start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker(redis_server):
    w = Worker(redis_server.url, concurrency=2).wait_ready()
    yield w
    w.stop()


@pytest.fixture
def jm(redis_server, worker, monkeypatch) -> JobManager:
    monkeypatch.setenv("QJM_REDIS_URL", redis_server.url)
    return JobManager()
