"""Latency histograms as counters in Redis: every worker on every host adds to the same ones,
and each observation (a job's result, a set's end) is counted once even when a task that
reports it is redelivered. ``qjm.metrics`` decides buckets and serves them."""

from __future__ import annotations

from typing import Any

import redis

from . import keys


class Histograms:
    def __init__(self, r: redis.Redis, ttl: int) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self.ttl = ttl

    def observe_once(self, metric: str, backend: str, sid: str, member: str, bucket: str, seconds: float) -> bool:
        """Count one observation, unless this member of the set was counted already.

        The seen-set lives in the set's hash slot and the histogram in the backend's, so they are
        two steps (Redis Cluster forbids one script over both): marking first means a crash in
        between loses one observation rather than counting one twice."""
        seen = keys.metrics_seen(sid)
        p = self.r.pipeline(transaction=False)
        p.sadd(seen, member)
        p.expire(seen, self.ttl)
        if not p.execute()[0]:
            return False
        self.observe(metric, backend, bucket, seconds)
        return True

    def observe(self, metric: str, backend: str, bucket: str, seconds: float) -> None:
        """Count one observation that its caller is told of once (e.g. a job's move to DONE)."""
        p = self.r.pipeline(transaction=False)
        hist = keys.histogram(metric, backend)
        p.hincrby(hist, bucket, 1)
        p.hincrby(hist, "count", 1)
        p.hincrbyfloat(hist, "sum", seconds)
        p.execute()

    def read(self, metric: str) -> dict[str, dict[str, str]]:
        """Backend -> the histogram's fields."""
        out = {}
        for key in self.r.scan_iter(match=keys.histogram(metric, "*"), count=500):
            backend = key.decode().rsplit("{", 1)[1].rstrip("}")
            out[backend] = {k.decode(): v.decode() for k, v in self.r.hgetall(key).items()}
        return out
