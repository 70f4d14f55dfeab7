"""Latency histograms as counters in Redis: every worker on every host adds to the same ones.
Each observation (a job's result, a set's end) is reported by the one transition that made it,
so a redelivered task counts nothing twice. ``qjm.ops.metrics`` decides buckets and serves them."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import redis

from . import keys

#: Seconds an observation of ``observe_later`` waits in its process, gathering others, before it
#: is written: a busy worker then writes its histograms once a second, not once per job.
FLUSH_AFTER = 1.0


class Histograms:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self._lock = threading.Lock()
        self._pending: defaultdict[tuple[str, str, str], float] = defaultdict(float)  # (metric, backend, field) -> by
        self._timer: threading.Timer | None = None

    def observe(self, metric: str, backend: str, bucket: str, seconds: float) -> None:
        """Count one observation that its caller is told of once (e.g. a job's move to DONE)."""
        self._write(_increments(metric, backend, bucket, seconds))

    def observe_later(self, metric: str, backend: str, bucket: str, seconds: float) -> None:
        """``observe``, written with this process's other observations within ``FLUSH_AFTER``
        seconds (a process killed meanwhile loses that second of observations, not more)."""
        self._gather(_increments(metric, backend, bucket, seconds))

    def flush(self) -> None:
        """Write what ``observe_later`` gathered (kept for the next flush if Redis fails now)."""
        with self._lock:
            pending, self._pending, self._timer = self._pending, defaultdict(float), None
        if not pending:
            return
        try:
            self._write(pending)
        except redis.RedisError:
            self._gather(pending)

    def _gather(self, increments: dict[tuple[str, str, str], float]) -> None:
        with self._lock:
            for name, by in increments.items():
                self._pending[name] += by
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_AFTER, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def _write(self, increments: dict[tuple[str, str, str], float]) -> None:
        p = self.r.pipeline(transaction=False)
        for (metric, backend, name), by in increments.items():
            hist = keys.histogram(metric, backend)
            if name == "sum":
                p.hincrbyfloat(hist, name, by)
            else:
                p.hincrby(hist, name, int(by))
        p.execute()

    def read(self, metric: str) -> dict[str, dict[str, str]]:
        """Backend -> the histogram's fields."""
        out = {}
        for key in self.r.scan_iter(match=keys.histogram(metric, "*"), count=500):
            backend = key.decode().rsplit("{", 1)[1].rstrip("}")
            out[backend] = {k.decode(): v.decode() for k, v in self.r.hgetall(key).items()}
        return out


def _increments(metric: str, backend: str, bucket: str, seconds: float) -> dict[tuple[str, str, str], float]:
    """One observation: its bucket and the count go up by one, the sum by ``seconds``."""
    return {(metric, backend, bucket): 1, (metric, backend, "count"): 1, (metric, backend, "sum"): seconds}
