"""The Celery app. Its settings come from ``qjm.engine.tasks`` so clients and workers cannot disagree."""

from __future__ import annotations

import logging
from typing import Any

# Imported once in the parent so that forked pool processes share them instead of each
# paying seconds of import time on their first task.
import qiskit.transpiler.preset_passmanagers  # noqa: F401
import qiskit_aer  # noqa: F401
import qiskit_ibm_runtime.fake_provider  # noqa: F401
from celery import Celery, signals

from qjm.config import settings
from qjm.engine import tasks as names

app = Celery("qjm", include=["workers.tasks", "qjm.ops.metrics"])  # metrics: worker-side hooks
app.conf.update(names.celery_settings(settings()))

#: Libraries whose INFO records are per pass or per request: at a worker's usual ``-l info`` the
#: transpiler alone writes a line per pass per circuit, which made a 100-circuit job half again as
#: slow. They log warnings and errors only; ``QJM_LIBRARY_LOG_LEVEL`` overrides (e.g. DEBUG).
QUIET_LIBRARIES = ("qiskit", "qiskit_aer", "qiskit_ibm_runtime", "stevedore")


@signals.after_setup_logger.connect(weak=False)
def _quiet_libraries(**_: Any) -> None:
    level = settings().library_log_level
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(level)


# Likewise the table of local backends, read from the fake provider's modules.
from qjm.executors.local import local_backend_names  # noqa: E402

local_backend_names()

# Every worker runs the reconciler (qjm.engine.reconciler) on its consumer's timer.
from .reconciler import ReconcilerStep  # noqa: E402

app.steps["consumer"].add(ReconcilerStep)
