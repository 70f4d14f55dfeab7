"""QPU seconds in Redis: each set's budget, reservations and charges (on the set's own slot), and
each instance's month (on the instance's slot).

A job attempt reserves its estimate right before its post in two steps, each one script on one
hash slot: first in its set (``reserve_set.lua``), then in its instance's month
(``reserve_instance.lua``); a refusal of the second gives the first back. When the attempt ends,
both reservations turn into its charge (``settle_*.lua``), set first. Every step is idempotent per
attempt, so a redelivery repeats none of it; what a worker killed between two steps leaves is
found by the reconciler (``qjm.usage.repair``), which settles it from the job's record.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

import redis

from . import keys, scripts


def month(now: float | None = None) -> str:
    """The UTC month ``now`` falls in, as ``YYYY-MM``: an instance's budget is per month."""
    return datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc).strftime("%Y-%m")


def attempt_ref(sid: str, i: int, attempt: int) -> str:
    """How an attempt's reservation is named in its instance's month."""
    return f"{sid}:{i}:{attempt}"


def parse_attempt_ref(ref: str) -> tuple[str, int, int]:
    sid, i, attempt = ref.rsplit(":", 2)
    return sid, int(i), int(attempt)


#: Seconds an instance's month is kept in Redis after its last reservation (about three months).
MONTH_KEPT = 92 * 24 * 3600


@dataclass(frozen=True)
class Grant:
    """What a reservation got: ``granted``, or held back with ``used`` seconds already taken."""

    granted: bool
    used: float = 0.0
    #: The job moved to another attempt meanwhile (nothing was reserved).
    stale: bool = False
    #: The instance month a set's reservation is for (``reserve_in_set``).
    period: str = ""


def _grant(out: Any) -> Grant:
    code, said = int(out[0]), out[1]
    said = said.decode() if isinstance(said, bytes) else said
    if code == 1:
        return Grant(True, period=said or "")
    return Grant(False, float(said) if said else 0.0, stale=code == -1)


@dataclass(frozen=True)
class MonthFigures:
    """An instance's month as qjm counted it."""

    consumed: float
    reserved: float
    reservations: dict[str, float]


class UsageBook:
    def __init__(self, r: redis.Redis) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self._reserve_set = scripts.load(r, "reserve_set")
        self._settle_set = scripts.load(r, "settle_set")
        self._reserve_instance = scripts.load(r, "reserve_instance")
        self._settle_instance = scripts.load(r, "settle_instance")

    # ----- a set
    def reserve_in_set(self, sid: str, i: int, attempt: int, estimate: float, period: str) -> Grant:
        args: list[Any] = [attempt, repr(estimate), period]
        return _grant(self._reserve_set(keys=[keys.job_set(sid), keys.job(sid, i)], args=args))

    def settle_in_set(self, sid: str, i: int, attempt: int, charge: float | None, backend: str) -> bool:
        args: list[Any] = [attempt, "" if charge is None else repr(float(charge)), backend]
        return bool(self._settle_set(keys=[keys.job_set(sid), keys.job(sid, i)], args=args))

    def set_budget(self, sid: str, seconds: float | None) -> None:
        self.r.hset(keys.job_set(sid), "qpu_budget", "" if seconds is None else repr(float(seconds)))

    # ----- an instance
    def reserve_in_instance(self, instance: str, period: str, ref: str, estimate: float,
                            budget: float | None) -> Grant:
        args: list[Any] = [ref, repr(estimate), "" if budget is None else repr(float(budget)), repr(time.time()),
                           MONTH_KEPT]
        return _grant(self._reserve_instance(keys=[keys.usage_month(instance, period)], args=args))

    def settle_in_instance(self, instance: str, period: str, ref: str, charge: float | None, backend: str) -> bool:
        args = [ref, "" if charge is None else repr(float(charge)), backend]
        return bool(self._settle_instance(keys=[keys.usage_month(instance, period), keys.usage_totals(instance)],
                                          args=args))

    def totals(self, instance: str) -> dict[str, float]:
        """Backend -> QPU seconds charged there, ever (``keys.usage_totals``)."""
        return {k.decode(): float(v) for k, v in self.r.hgetall(keys.usage_totals(instance)).items()}

    def month_figures(self, instance: str, period: str) -> MonthFigures:
        h = {k.decode(): v.decode() for k, v in self.r.hgetall(keys.usage_month(instance, period)).items()}
        held = {k[2:]: float(v.split("@", 1)[0]) for k, v in h.items() if k.startswith("r:")}
        return MonthFigures(max(0.0, float(h.get("consumed") or 0.0)), max(0.0, float(h.get("reserved") or 0.0)), held)

    def reserved_since(self, instance: str, period: str) -> dict[str, float]:
        """Attempt ref -> when its reservation was made, for every reservation the month holds."""
        h = self.r.hgetall(keys.usage_month(instance, period))
        return {k.decode()[2:]: float(v.decode().split("@", 1)[1]) for k, v in h.items() if k.startswith(b"r:")}
