"""How long a backend's recent remote jobs took, shared by every worker (``qjm.engine.polling`` plans
its polls with it)."""

from __future__ import annotations

from typing import Any

import redis

from ..config import DAY
from ..engine.polling import Estimate
from . import keys, scripts
from .runs import DeviceRuns


class Durations:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self._record = scripts.load(r, "record_duration")
        #: What polls saw of the device's jobs running (when each started, when the last ended).
        self.runs = DeviceRuns(r)

    def record(self, backend: str, seconds: float, weight: float = 0.3) -> None:
        """Fold one finished job's duration into the estimate (kept a day after the last)."""
        self._record(keys=[keys.durations(backend)], args=[repr(seconds), repr(weight), DAY])

    def record_pace(self, backend: str, seconds: float, weight: float = 0.3) -> None:
        """Fold one job's seconds per job ahead of it (its duration over its queue at post, plus
        itself) into the device's pace."""
        self._record(keys=[keys.pace(backend)], args=[repr(seconds), repr(weight), DAY])

    def pace(self, backend: str) -> float | None:
        mean = self.r.hget(keys.pace(backend), "mean")
        return None if mean is None else float(mean)

    def estimate(self, backend: str) -> Estimate | None:
        """The backend's running estimate, or None before any of its jobs finished (or a day after)."""
        return self._read(keys.durations(backend))

    def pace_estimate(self, backend: str) -> Estimate | None:
        """The device's seconds per job, give or take (None before a job of it finished)."""
        return self._read(keys.pace(backend))

    def _read(self, key: str) -> Estimate | None:
        mean, dev = self.r.hmget(key, "mean", "dev")
        if mean is None or dev is None:
            return None
        return Estimate(float(mean), float(dev))
