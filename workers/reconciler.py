"""Runs ``qjm.engine.reconciler`` inside every worker, on the consumer's timer (as Celery's own
heartbeat does): no beat process, nothing to deploy, and it keeps running while tasks run."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer

from qjm.engine.pipeline import Pipeline
from qjm.engine.reconciler import Reconciler

log = logging.getLogger(__name__)


class ReconcilerStep(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Consumer, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.reconciler: Reconciler | None = None

    def start(self, parent: Consumer) -> None:
        pipeline = Pipeline()
        self.reconciler = Reconciler(pipeline, node=parent.hostname)
        self.tref = parent.timer.call_repeatedly(pipeline.cfg.reconcile_interval, self.tick, priority=10)

    def stop(self, parent: Consumer) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def tick(self) -> None:
        assert self.reconciler is not None
        try:
            self.reconciler.tick()
        except Exception:  # noqa: BLE001 - Redis down now is no reason to stop trying next tick
            log.exception("qjm reconciler tick failed")
