"""Which instance a process's QPU time belongs to, and the service's own usage figures for it.

The service is asked (``service.usage()``) at most once per ``QJM_SERVICE_USAGE_SECONDS`` per
instance, by whichever process finds the shared answer stale and takes the refresh lock; every
other process reads that answer from Redis. While it says ``usage_limit_reached``, qjm posts
nothing to the instance (its jobs are HELD), and they go on by themselves once an answer says
the instance has time again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..store import Store, keys

log = logging.getLogger(__name__)


def instance_name(cfg: Settings) -> str:
    """The instance as a user names it (its CRN), or the service's URL, or ``default``."""
    return cfg.ibm_instance or (cfg.ibm_url or "").rstrip("/") or "default"


def instance_key(cfg: Settings) -> str:
    """The instance's part of its Redis keys: a digest of its CRN (else of the service's URL),
    so every process that names the instance shares its budget (keys are visible to anyone with
    Redis: never the token)."""
    seed = cfg.ibm_instance or f"{cfg.ibm_channel}|{(cfg.ibm_url or '').rstrip('/')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def ask_service(cfg: Settings) -> dict[str, Any] | None:
    """``service.usage()`` of the configured account, None when no IBM account is configured."""
    if not (cfg.ibm_token or cfg.ibm_url or cfg.ibm_instance or cfg.ibm_channel):
        return None
    from ..executors.ibm.account import Account, service_for
    from ..executors.ibm.errors import call

    return dict(call(service_for(Account.from_settings(cfg)).usage, "instance usage"))


class ServiceFigures:
    """The service's usage figures for one instance, shared through Redis."""

    def __init__(self, store: Store, cfg: Settings, ask: Callable[[], dict[str, Any] | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.cfg = store, cfg
        self.key = instance_key(cfg)
        self.ask = ask or (lambda: ask_service(cfg))
        self.clock = clock

    def answer(self, fresh: bool = False) -> dict[str, Any] | None:
        """The last answer, asking the service first when it is older than the sharing period
        (and this process gets the refresh lock) or ``fresh`` is asked for."""
        r, now = self.store.r, self.clock()
        raw = r.get(keys.service_usage(self.key))
        cached = json.loads(raw) if raw else None
        stale = cached is None or now - float(cached["at"]) >= self.cfg.service_usage_seconds
        if cached is not None and not (stale or fresh):
            return cached["answer"]
        period = max(1, int(self.cfg.service_usage_seconds))
        if not fresh and not r.set(keys.service_usage_refresh(self.key), "1", nx=True, ex=period):
            return cached["answer"] if cached else None  # another process asks now
        try:
            answer = self.ask()
        except Exception as exc:  # noqa: BLE001 - an advisory look: the last answer stands (asked again in a period)
            log.info("asking the service for its usage failed: %s", exc)
            return cached["answer"] if cached else None
        if answer is None:  # this process cannot ask (no account here): leave it to one that can
            r.delete(keys.service_usage_refresh(self.key))
            return cached["answer"] if cached else None
        r.set(keys.service_usage(self.key), json.dumps({"at": now, "answer": answer}))
        return answer

    def limit_reached(self) -> bool:
        return bool((self.answer() or {}).get("usage_limit_reached"))
