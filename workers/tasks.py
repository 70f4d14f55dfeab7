"""Thin task wrappers: each calls one ``qjm.engine.pipeline`` step and turns "later" into a Celery retry."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from celery import Task

from qjm.client import tags
from qjm.client.deletion import ends_quietly, purge
from qjm.engine import tasks as names
from qjm.engine.pipeline import Pipeline
from qjm.errors import RetryLater

from .app import app

# Redis briefly unreachable: retry the step with back-off instead of failing the chord.
_TRANSIENT: dict[str, Any] = {"autoretry_for": (redis.ConnectionError, redis.TimeoutError), "retry_backoff": True,
                              "retry_backoff_max": 60, "max_retries": None}


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    """One per worker process, created after the fork."""
    return Pipeline()


@app.task(name=names.TRANSPILE, bind=True, **_TRANSIENT)
def transpile_job(self: Task, job_set_id: str, job: int, count: int = 1) -> None:
    try:
        with ends_quietly(pipeline().store, job_set_id):
            pipeline().transpile(job_set_id, job, node=self.request.hostname or "", count=count)
    except RetryLater as later:
        raise self.retry(countdown=later.delay, max_retries=None) from later


@app.task(name=names.SUBMIT, bind=True, **_TRANSIENT)
def submit_job(self: Task, job_set_id: str, job: int) -> None:
    try:
        with ends_quietly(pipeline().store, job_set_id):
            pipeline().submit(job_set_id, job, node=self.request.hostname or "")
    except RetryLater as later:
        raise self.retry(countdown=later.delay, max_retries=None) from later


@app.task(name=names.POLL, bind=True, **_TRANSIENT)
def poll_job(self: Task, job_set_id: str, job: int, epoch: int = 0) -> None:
    delay = None
    with ends_quietly(pipeline().store, job_set_id):
        delay = pipeline().poll(job_set_id, job, node=self.request.hostname or "", epoch=epoch)
    if delay is not None:
        raise self.retry(countdown=delay, max_retries=None)


@app.task(name=names.ASSEMBLE, bind=True, **_TRANSIENT)
def assemble_job_set(self: Task, job_set_id: str) -> str:
    with ends_quietly(pipeline().store, job_set_id):
        return pipeline().assemble(job_set_id).value
    return "DELETED"


@app.task(name=names.SEND_JOBS, bind=True, **_TRANSIENT)
def send_jobs(self: Task, job_set_id: str, n_jobs: int, local: bool, per_message: int = 1) -> None:
    pipeline().send_jobs(job_set_id, n_jobs, local, per_message)


@app.task(name=names.CANCEL, bind=True, **_TRANSIENT)
def cancel_job_set(self: Task, job_set_id: str, jobs: list[int] | None = None) -> None:
    with ends_quietly(pipeline().store, job_set_id):
        pipeline().cancel(job_set_id, jobs)


@app.task(name=names.RETAG, bind=True, **_TRANSIENT)
def retag_job_set(self: Task, job_set_id: str) -> int:
    with ends_quietly(pipeline().store, job_set_id):
        return tags.retag_job_set(pipeline().store, pipeline().executor_for, job_set_id)
    return 0


@app.task(name=names.PURGE, bind=True, **_TRANSIENT)
def purge_job_set(self: Task, job_set_id: str) -> None:
    p = pipeline()
    purge(p.store, p.remote, job_set_id)
