"""Task names, queues and Celery settings shared by the client (which sends) and the workers.

qjm sends its tasks by *name*, so importing qjm never imports the worker code.
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from ..config import Settings, redis_ssl_options
from ..lifecycle import Step

CPU_QUEUE = "qjm.cpu"  # transpilation and local simulation
IO_QUEUE = "qjm.io"  # remote submits, polling, assembly

TRANSPILE = "qjm.transpile_job"
SUBMIT = "qjm.submit_job"
POLL = "qjm.poll_job"
ASSEMBLE = "qjm.assemble_job_set"
CANCEL = "qjm.cancel_job_set"
RETAG = "qjm.retag_job_set"
PURGE = "qjm.purge_job_set"
SEND_JOBS = "qjm.send_jobs"  # a large set's job messages, sent by a worker (``qjm.engine.dispatch``)

STEP_TASKS = {Step.TRANSPILE: TRANSPILE, Step.SUBMIT: SUBMIT, Step.POLL: POLL}
ROUTES = {TRANSPILE: CPU_QUEUE, SUBMIT: IO_QUEUE, POLL: IO_QUEUE, ASSEMBLE: IO_QUEUE, CANCEL: IO_QUEUE,
          RETAG: IO_QUEUE, PURGE: IO_QUEUE, SEND_JOBS: IO_QUEUE}


def celery_settings(cfg: Settings) -> dict[str, Any]:
    """Settings for a queue that must not lose work: JSON only, late acks, one task at a time."""
    return {
        "broker_url": cfg.broker,
        "result_backend": cfg.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "result_expires": cfg.ttl_seconds,
        # qjm reads its state from its own keys and joins a set there (``qjm.engine.dispatch``): no
        # task's result is stored, so none sits in Redis for ``result_expires``.
        "task_ignore_result": True,
        "task_queues": [Queue(CPU_QUEUE, routing_key=CPU_QUEUE), Queue(IO_QUEUE, routing_key=IO_QUEUE)],
        "task_default_queue": IO_QUEUE,
        "task_routes": {name: {"queue": q} for name, q in ROUTES.items()},
        # A task whose worker died unacknowledged comes back after the visibility timeout; kombu
        # looks for such tasks only every 100 s by default, so look every few seconds instead.
        # The look is made under a Redis mutex that a worker killed mid-look leaves behind for
        # its expiry (5 minutes by default): keep that short, since a look takes milliseconds.
        # Redis broker: message bodies are JSON text, so they are kept as text rather than
        # base64 (a third more bytes in every queue push, unacked copy and event).
        "broker_transport_options": {"body_encoding": "utf-8",
                                     "visibility_timeout": cfg.visibility_timeout,
                                     "unacked_restore_interval": max(1, min(10, cfg.visibility_timeout // 4)),
                                     "unacked_restore_throttle": 1,
                                     "unacked_mutex_expire": 15},
        "result_backend_transport_options": {"visibility_timeout": cfg.visibility_timeout},
        "broker_connection_retry_on_startup": True,
        # Flower sees every task from the moment it is queued.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        # A rediss:// broker: its TLS options from the URL (Flower reads them only from here).
        **({"broker_use_ssl": ssl} if (ssl := redis_ssl_options(cfg.broker)) else {}),
    }
