"""The Celery app. Its settings come from ``qjm.tasks`` so clients and workers cannot disagree."""

from __future__ import annotations

# Imported once in the parent so that forked pool processes share them instead of each
# paying seconds of import time on their first task.
import qiskit.transpiler.preset_passmanagers  # noqa: F401
import qiskit_aer  # noqa: F401
import qiskit_ibm_runtime.fake_provider  # noqa: F401
from celery import Celery

from qjm import tasks as names
from qjm.config import settings

app = Celery("qjm", include=["workers.tasks", "qjm.metrics"])  # metrics: worker-side hooks
app.conf.update(names.celery_settings(settings()))

# Likewise the table of local backends, read from the fake provider's modules.
from qjm.executors.local import local_backend_names  # noqa: E402

local_backend_names()

# Every worker runs the reconciler (qjm.reconciler) on its consumer's timer.
from .reconciler import ReconcilerStep  # noqa: E402

app.steps["consumer"].add(ReconcilerStep)
