"""Test processes are qjm's own (``qjm.ops.cluster``): a private redis-server and real Celery workers."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from qjm.ops.cluster import ROOT, free_port, process_env, wait_for
from qjm.ops.cluster import RedisProcess as RedisServer
from qjm.ops.cluster import WorkerProcess as Worker

worker_env = process_env


@contextmanager
def worker_starter(redis_url: str, **common: str) -> Iterator[Callable[..., Worker]]:
    """``start(concurrency=2, wait=True, queues=None, **env)`` starts a worker with ``common`` and
    ``env`` in its environment; every worker started is killed when the block ends."""
    started: list[Worker] = []

    def start(concurrency: int = 2, wait: bool = True, queues: str | None = None, **env: str) -> Worker:
        w = Worker(redis_url, concurrency=concurrency, queues=queues, **{**common, **env})
        started.append(w)
        return w.wait_ready() if wait else w

    try:
        yield start
    finally:
        for w in started:
            w.kill()
            w.stop()


__all__ = ["ROOT", "RedisServer", "Worker", "free_port", "worker_env", "worker_starter", "wait_for"]
