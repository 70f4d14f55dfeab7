"""Thin task wrappers: each calls one ``qjm.pipeline`` step and turns "later" into a Celery retry."""

from __future__ import annotations

from functools import lru_cache

import redis

from qjm import tasks as names
from qjm.errors import RetryLater
from qjm.pipeline import Pipeline

from .app import app

# Redis briefly unreachable: retry the step with back-off instead of failing the chord.
_TRANSIENT = {"autoretry_for": (redis.ConnectionError, redis.TimeoutError), "retry_backoff": True,
              "retry_backoff_max": 60, "max_retries": None}


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    """One per worker process, created after the fork."""
    return Pipeline()


@app.task(name=names.TRANSPILE, bind=True, **_TRANSIENT)
def transpile_chunk(self, job_set_id: str, chunk: int) -> None:
    pipeline().transpile_chunk(job_set_id, chunk)


@app.task(name=names.SUBMIT, bind=True, **_TRANSIENT)
def submit_chunk(self, job_set_id: str, chunk: int) -> None:
    try:
        pipeline().submit_chunk(job_set_id, chunk)
    except RetryLater as later:
        raise self.retry(countdown=later.delay, max_retries=None)


@app.task(name=names.POLL, bind=True, **_TRANSIENT)
def poll_chunk(self, job_set_id: str, chunk: int) -> None:
    try:
        delay = pipeline().poll_chunk(job_set_id, chunk)
    except RetryLater as later:
        delay = later.delay
    if delay is not None:
        raise self.retry(countdown=delay, max_retries=None)


@app.task(name=names.ASSEMBLE, bind=True, **_TRANSIENT)
def assemble_job_set(self, job_set_id: str) -> str:
    return pipeline().assemble(job_set_id).value


@app.task(name=names.CANCEL, bind=True, **_TRANSIENT)
def cancel_job_set(self, job_set_id: str) -> None:
    pipeline().cancel_remote(job_set_id)
