"""What qjm's polls saw of a device's jobs running, shared by every worker (``qjm.engine.polling.serial_end``
plans with it).

A device that runs one job at a time (IBM's do) starts a job when the one before it ends, and
ends it one run later. So a job's end is bounded by what polls saw: not before the last look
that found it queued, nor before the end of qjm's job that last ended there, plus a run; not
after the first look that found it running, plus a run. A device where two of qjm's jobs were
seen running at once, or ending closer together than a run, does not run in turn, and is
marked so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from ..config import DAY
from . import keys

#: Jobs seen running then ended, none two at once, before a device is taken to run its jobs in
#: turn: a job is mostly looked at more than once near its end, so two running at once show first.
SERIAL_AFTER = 5


@dataclass(frozen=True)
class Seen:
    """One job's looks and its device's last end (wall times; None: not seen)."""

    queued_at: float | None
    running_at: float | None
    end_lo: float | None
    end_hi: float | None
    serial: bool


class DeviceRuns:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r

    def read(self, backend: str, ref: str) -> Seen:
        vals = self.r.hmget(keys.runs(backend), f"q:{ref}", f"r:{ref}", "end_lo", "end_hi", "parallel", "running")
        q, run, lo, hi, parallel, running = (None if v is None else float(v) for v in vals)
        return Seen(q, run, lo, hi, not parallel and (running or 0) >= SERIAL_AFTER)

    def parallel(self, backend: str) -> bool:
        """Whether two of qjm's jobs were seen running on the device at once."""
        return bool(self.r.hexists(keys.runs(backend), "parallel"))

    def seen(self, backend: str, ref: str, running: bool, now: float) -> None:
        """A look found the job queued (``running`` False) or running at ``now``. Two jobs are
        seen running at once when this one was already running before another was last seen so."""
        key = keys.runs(backend)
        pipe = self.r.pipeline(transaction=False)
        if not running:
            pipe.hset(key, f"q:{ref}", repr(now))
        else:
            first, last_ref, last_at = self.r.hmget(key, f"r:{ref}", "sight_ref", "sight_at")
            if first is None:
                pipe.hset(key, f"r:{ref}", repr(now))
            elif last_ref is not None and last_ref.decode() != ref and float(last_at) > float(first):
                pipe.hset(key, "parallel", 1)
            pipe.hset(key, mapping={"sight_ref": ref, "sight_at": repr(now)})
        pipe.expire(key, DAY)
        pipe.execute()

    def ended(self, backend: str, ref: str, lo: float, hi: float, pace: float | None) -> None:
        """The job ended between ``lo`` (last seen pending) and ``hi``: the latest such end is kept.
        A device that runs jobs in turn ends them a run apart: two ends closer than half its time
        per job (``pace``) mean it runs several at once."""
        key = keys.runs(backend)
        last_lo, last_hi, was_running = self.r.hmget(key, "end_lo", "end_hi", f"r:{ref}")
        pipe = self.r.pipeline(transaction=False)
        if last_lo is not None and pace and max(hi - float(last_lo), float(last_hi) - lo) < 0.5 * pace:
            pipe.hset(key, "parallel", 1)
        if last_lo is None or float(last_lo) < lo:
            pipe.hset(key, mapping={"end_lo": repr(lo), "end_hi": repr(hi)})
        if was_running is not None:
            pipe.hincrby(key, "running", 1)
        pipe.hdel(key, f"q:{ref}", f"r:{ref}")
        pipe.execute()
