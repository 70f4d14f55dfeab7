"""Enqueueing a job set: one message per job, built from task names (no worker code imported).

A set is joined in Redis, not by a Celery chord: the move that makes a set's last job final
sends its assembly (``Transitions``), and the reconciler re-sends an assembly that was lost. A
chord would store every task's result and count them in the result backend, which is most of
a small job's Redis traffic; qjm reads no Celery result (``task_ignore_result``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery, Signature, chain
from celery.backends.redis import RedisBackend
from kombu.exceptions import ChannelError

from ..config import Settings
from ..lifecycle import Step
from . import tasks


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
    """A job's steps from ``first`` on: ``transpile -> submit -> poll`` for a remote job.

    A local job is simulated by its transpile task (``Pipeline.transpile``), on the CPU queue,
    and ends final (a local job cannot be polled from another process): its chain is that one
    task, or its submit step alone when that is what is re-sent. The poll loop carries its
    ``epoch`` (see ``Pipeline.poll``)."""
    steps = [Step.TRANSPILE] if local and first is Step.TRANSPILE else \
        [Step.TRANSPILE, Step.SUBMIT] + ([] if local else [Step.POLL])
    sigs = []
    for step in steps[steps.index(first):]:
        sig = app.signature(tasks.STEP_TASKS[step], args=(job_set_id, i), immutable=True)
        if step is Step.SUBMIT and local:
            sig = sig.set(queue=tasks.CPU_QUEUE)
        if step is Step.POLL and epoch:
            sig = app.signature(tasks.POLL, args=(job_set_id, i), kwargs={"epoch": epoch}, immutable=True)
        sigs.append(sig)
    return sigs[0] if len(sigs) == 1 else chain(*sigs)


#: A set of more messages than this has them sent by a worker: ``run()`` returns sooner.
SEND_IN_CLIENT = 32

#: Small local jobs share a message, a *run* of consecutive jobs that one task transpiles and
#: simulates one after another (``Pipeline.transpile``). A message costs the broker a queue push,
#: an unacknowledged copy, an ack and its task events: with the Redis broker about 9 KiB and eight
#: round trips, more than a one-circuit job's own state. A run holds at most
#: ``Settings.jobs_per_message`` jobs (``QJM_JOBS_PER_MESSAGE``, 8), ``RUN_CIRCUITS`` circuits and
#: ``RUN_EXECUTIONS`` shots in all, and a set keeps at least ``RUN_MIN_MESSAGES`` messages, so
#: every worker still gets a share and the last message is short.
RUN_CIRCUITS = 16
RUN_EXECUTIONS = 1 << 16
RUN_MIN_MESSAGES = 32


def jobs_per_message(cfg: Settings, circuits_per_job: list[int], shots: int | None, local: bool) -> int:
    """How many consecutive jobs of a set one message carries (see ``RUN_CIRCUITS``). Remote
    jobs, and jobs of pubs (whose executions the primitive decides), get a message each."""
    if not local or shots is None or not circuits_per_job:
        return 1
    widest = max(circuits_per_job)
    by_size = min(cfg.jobs_per_message, RUN_CIRCUITS // widest, RUN_EXECUTIONS // max(1, widest * shots))
    return max(1, min(by_size, len(circuits_per_job) // RUN_MIN_MESSAGES))


def enqueue_job_set(cfg: Settings, job_set_id: str, n_jobs: int, local: bool, per_message: int = 1) -> None:
    """Every job's chain, in job order, ``per_message`` local jobs to a message: from here for a
    small set; for a larger one, one message asks a worker to send them (``send_jobs``), which
    takes the client ~2 ms per message otherwise. Either way the set is in Redis first, so a
    message lost on the way (or a client or worker that dies mid-way) costs a grace period: the
    reconciler sends the steps that never started."""
    if -(-n_jobs // per_message) <= SEND_IN_CLIENT:
        send_jobs(cfg, job_set_id, n_jobs, local, per_message)
    else:
        client_app(cfg).send_task(tasks.SEND_JOBS, args=(job_set_id, n_jobs, local, per_message))


def send_jobs(cfg: Settings, job_set_id: str, n_jobs: int, local: bool, per_message: int = 1) -> None:
    """Send each job's first message (or each run's, see ``jobs_per_message``), through one producer."""
    app = client_app(cfg)
    with app.producer_or_acquire() as producer:
        for first in range(0, n_jobs, per_message):
            count = min(per_message, n_jobs - first)
            sig = job_chain(app, job_set_id, first, local) if count == 1 else \
                app.signature(tasks.TRANSPILE, args=(job_set_id, first), kwargs={"count": count}, immutable=True)
            sig.apply_async(producer=producer)


def enqueue_jobs(cfg: Settings, job_set_id: str, first_steps: dict[int, Step], local: bool,
                 epochs: dict[int, int] | None = None) -> None:
    """Some jobs' chains, each from its own first step (a re-run of a set's failed jobs): the move
    that makes the last of them final sends the set's assembly, as for a new set."""
    app = client_app(cfg)
    with app.producer_or_acquire() as producer:
        for i, step in sorted(first_steps.items()):
            job_chain(app, job_set_id, i, local, first=step, epoch=(epochs or {}).get(i, 0)).apply_async(
                producer=producer)


def send_retag(cfg: Settings, job_set_id: str) -> None:
    """The set's tags go to its remote jobs through a worker, which holds the credentials."""
    client_app(cfg).send_task(tasks.RETAG, args=(job_set_id,))


def send_purge(cfg: Settings, job_set_id: str) -> None:
    """A deleted set's remote jobs are cancelled, then its keys removed, by a worker."""
    client_app(cfg).send_task(tasks.PURGE, args=(job_set_id,))


def resend_step(cfg: Settings, job_set_id: str, i: int, step: Step, local: bool, epoch: int) -> None:
    """The reconciler's re-send: the job's remaining steps (the move that makes the set's last
    job final sends the assembly)."""
    job_chain(client_app(cfg), job_set_id, i, local, first=step, epoch=epoch).apply_async()


def send_assemble(cfg: Settings, job_set_id: str) -> None:
    client_app(cfg).send_task(tasks.ASSEMBLE, args=(job_set_id,))


def enqueue_cancel(cfg: Settings, job_set_id: str, jobs: list[int] | None = None) -> None:
    """Remote jobs and batches are cancelled by a worker, which holds the credentials; ``jobs``
    names the jobs the user cancelled alone (``ManagedJob.cancel``), else the whole set's."""
    client_app(cfg).send_task(tasks.CANCEL, args=(job_set_id,), kwargs={"jobs": jobs} if jobs else {})


def queue_length(cfg: Settings, queue: str) -> int:
    """Messages waiting in ``queue`` on the broker (Redis or AMQP alike, through kombu); 0 for a
    queue the broker does not have (the Redis broker drops an empty queue's list)."""
    with client_app(cfg).connection_for_read() as conn, conn.channel() as channel:
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except ChannelError:
            return 0
