"""Enqueueing a job set: one Celery chord built from task names (no worker code imported)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery, chain, chord
from celery.backends.redis import RedisBackend

from . import tasks
from .config import Settings


class SendOnlyRedisBackend(RedisBackend):
    """The client reads job-set state from qjm's store, never Celery results, so it does not
    subscribe to result channels (which would keep a pub/sub connection open for nothing)."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result

    def remove_pending_result(self, result: Any) -> Any:  # AsyncResult.__del__ must not touch Redis
        return result


@lru_cache(maxsize=8)
def client_app(cfg: Settings) -> Celery:
    app = Celery("qjm-client")
    conf = tasks.celery_settings(cfg)
    if conf["result_backend"].startswith(("redis://", "rediss://", "unix://")):
        conf["result_backend"] = f"{__name__}.SendOnlyRedisBackend+{conf['result_backend']}"
    app.conf.update(conf)
    return app


def enqueue_job_set(cfg: Settings, job_set_id: str, n_jobs: int, local: bool) -> str:
    """Per job ``transpile -> submit [-> poll]``; ``assemble`` once all chains have ended.

    Local simulation is CPU work, so a local set's submit step goes to the CPU queue, and it
    ends with the job final (a local job cannot be polled from another process), so local
    chains have no poll step. Returns the chord's id.
    """
    app = client_app(cfg)

    def chain_for(i: int) -> chain:
        transpile = app.signature(tasks.TRANSPILE, args=(job_set_id, i), immutable=True)
        submit = app.signature(tasks.SUBMIT, args=(job_set_id, i), immutable=True)
        if local:
            return chain(transpile, submit.set(queue=tasks.CPU_QUEUE))
        return chain(transpile, submit, app.signature(tasks.POLL, args=(job_set_id, i), immutable=True))

    body = app.signature(tasks.ASSEMBLE, args=(job_set_id,), immutable=True)
    return chord([chain_for(i) for i in range(n_jobs)])(body).id


def enqueue_cancel(cfg: Settings, job_set_id: str) -> None:
    """Remote jobs and batches are cancelled by a worker, which holds the credentials."""
    client_app(cfg).send_task(tasks.CANCEL, args=(job_set_id,))
