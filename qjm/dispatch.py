"""Enqueueing a job set: one Celery chord built from task names (no worker code imported)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery, Signature, chain, chord
from celery.backends.redis import RedisBackend
from kombu.exceptions import ChannelError

from . import tasks
from .config import Settings
from .lifecycle import Step


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


def job_chain(app: Celery, job_set_id: str, i: int, local: bool, first: Step = Step.TRANSPILE,
              epoch: int = 0) -> Signature:
    """A job's steps from ``first`` on: ``transpile -> submit [-> poll]``.

    Local simulation is CPU work, so a local set's submit step goes to the CPU queue, and it
    ends with the job final (a local job cannot be polled from another process), so local
    chains have no poll step. The poll loop carries its ``epoch`` (see ``Pipeline.poll``)."""
    steps = [Step.TRANSPILE, Step.SUBMIT] + ([] if local else [Step.POLL])
    sigs = []
    for step in steps[steps.index(first):]:
        sig = app.signature(tasks.STEP_TASKS[step], args=(job_set_id, i), immutable=True)
        if step is Step.SUBMIT and local:
            sig = sig.set(queue=tasks.CPU_QUEUE)
        if step is Step.POLL and epoch:
            sig = app.signature(tasks.POLL, args=(job_set_id, i), kwargs={"epoch": epoch}, immutable=True)
        sigs.append(sig)
    return chain(*sigs)


def enqueue_job_set(cfg: Settings, job_set_id: str, n_jobs: int, local: bool) -> str:
    """Every job's chain in one chord whose body assembles the set. Returns the chord's id."""
    app = client_app(cfg)
    body = app.signature(tasks.ASSEMBLE, args=(job_set_id,), immutable=True)
    return chord([job_chain(app, job_set_id, i, local) for i in range(n_jobs)])(body).id


def enqueue_jobs(cfg: Settings, job_set_id: str, first_steps: dict[int, Step], local: bool,
                 epochs: dict[int, int] | None = None) -> str:
    """Some jobs' chains, each from its own first step, in one chord whose body assembles the set
    (a re-run of a set's failed jobs). Returns the chord's id."""
    app = client_app(cfg)
    body = app.signature(tasks.ASSEMBLE, args=(job_set_id,), immutable=True)
    chains = [job_chain(app, job_set_id, i, local, first=step, epoch=(epochs or {}).get(i, 0))
              for i, step in sorted(first_steps.items())]
    return chord(chains)(body).id


def send_retag(cfg: Settings, job_set_id: str) -> None:
    """The set's tags go to its remote jobs through a worker, which holds the credentials."""
    client_app(cfg).send_task(tasks.RETAG, args=(job_set_id,))


def send_purge(cfg: Settings, job_set_id: str) -> None:
    """A deleted set's remote jobs are cancelled, then its keys removed, by a worker."""
    client_app(cfg).send_task(tasks.PURGE, args=(job_set_id,))


def resend_step(cfg: Settings, job_set_id: str, i: int, step: Step, local: bool, epoch: int) -> None:
    """The reconciler's re-send: the job's remaining steps, then the set's assembly (a no-op
    until every job of the set is final)."""
    app = client_app(cfg)
    rest = job_chain(app, job_set_id, i, local, first=step, epoch=epoch)
    chain(rest, app.signature(tasks.ASSEMBLE, args=(job_set_id,), immutable=True)).apply_async()


def send_assemble(cfg: Settings, job_set_id: str) -> None:
    client_app(cfg).send_task(tasks.ASSEMBLE, args=(job_set_id,))


def enqueue_cancel(cfg: Settings, job_set_id: str) -> None:
    """Remote jobs and batches are cancelled by a worker, which holds the credentials."""
    client_app(cfg).send_task(tasks.CANCEL, args=(job_set_id,))


def queue_length(cfg: Settings, queue: str) -> int:
    """Messages waiting in ``queue`` on the broker (Redis or AMQP alike, through kombu); 0 for a
    queue the broker does not have (the Redis broker drops an empty queue's list)."""
    with client_app(cfg).connection_for_read() as conn, conn.channel() as channel:
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0
