"""Cross-cutting behaviour (metrics, logging, notifications) hangs off named events here,
so the pipeline stays about job sets and never imports what listens to it.

Events: ``job_status`` (job_set_id, job, status, fields), ``job_set_created`` (record),
``job_set_final`` (job_set_id, status, record), ``slot`` (backend, in_use).
A listener that raises is logged and ignored: observers never break the work they observe.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[..., None]
_listeners: dict[str, list[Listener]] = defaultdict(list)


def on(event: str, listener: Listener) -> Listener:
    """Register ``listener`` for ``event``; returns it so it can be used as a decorator body."""
    _listeners[event].append(listener)
    return listener


def off(event: str, listener: Listener) -> None:
    if listener in _listeners[event]:
        _listeners[event].remove(listener)


def emit(event: str, **payload: Any) -> None:
    for listener in list(_listeners.get(event, ())):
        try:
            listener(**payload)
        except Exception:  # noqa: BLE001
            log.exception("qjm hook %r for %s failed", listener, event)
