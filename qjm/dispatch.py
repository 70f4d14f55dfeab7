"""Enqueueing a job set: one Celery chord built from task names (no worker code imported)."""

from __future__ import annotations

from functools import lru_cache

from celery import Celery, chain, chord

from . import tasks
from .config import Settings


@lru_cache(maxsize=8)
def client_app(cfg: Settings) -> Celery:
    app = Celery("qjm-client")
    app.conf.update(tasks.celery_settings(cfg))
    return app


def enqueue_job_set(cfg: Settings, job_set_id: str, n_chunks: int, local: bool) -> str:
    """Per chunk ``transpile -> submit -> poll``; ``assemble`` once all chains have ended.

    Local simulation is CPU work, so a local set's submit step goes to the CPU queue.
    Returns the chord's id.
    """
    app = client_app(cfg)
    submit_queue = tasks.CPU_QUEUE if local else tasks.IO_QUEUE
    header = [
        chain(
            app.signature(tasks.TRANSPILE, args=(job_set_id, i), immutable=True),
            app.signature(tasks.SUBMIT, args=(job_set_id, i), immutable=True).set(queue=submit_queue),
            app.signature(tasks.POLL, args=(job_set_id, i), immutable=True),
        )
        for i in range(n_chunks)
    ]
    body = app.signature(tasks.ASSEMBLE, args=(job_set_id,), immutable=True)
    return chord(header)(body).id


def enqueue_cancel(cfg: Settings, job_set_id: str) -> None:
    """Remote jobs and batches are cancelled by a worker, which holds the credentials."""
    client_app(cfg).send_task(tasks.CANCEL, args=(job_set_id,))
