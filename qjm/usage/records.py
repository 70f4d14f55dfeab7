"""What a user reads of QPU time: a set's (``SetUsage``) and an instance's month (``InstanceUsage``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SetUsage:
    """A set's QPU seconds. ``consumed``: what the service charged for its jobs' attempts that
    ended; ``reserved``: the estimates of attempts posted and not final; ``estimate``: consumed
    plus reserved plus the estimates of jobs not yet posted (a job not yet transpiled has none
    yet: ``unestimated`` counts them); ``budget``: the set's (None: none); ``by_backend``: backend
    -> consumed; ``held``: jobs waiting unposted for QPU time."""

    consumed: float
    reserved: float
    estimate: float
    budget: float | None
    by_backend: dict[str, float] = field(default_factory=dict)
    held: int = 0
    unestimated: int = 0

    @property
    def remaining(self) -> float | None:
        """What is left of the budget once the reservations are spent (None without one)."""
        return None if self.budget is None else max(0.0, self.budget - self.consumed - self.reserved)


@dataclass(frozen=True)
class InstanceUsage:
    """An instance's UTC month. ``consumed`` and ``reserved``: what qjm's jobs were charged and
    hold there this month; ``budget``: ``QJM_QPU_SECONDS_PER_MONTH`` (None: none) and
    ``remaining`` of it; ``service``: the service's own figures (``service.usage()``: consumed,
    limit, remaining, ``usage_limit_reached``), None when it could not be asked."""

    instance: str
    period: str
    consumed: float
    reserved: float
    budget: float | None
    service: dict[str, Any] | None = None

    @property
    def remaining(self) -> float | None:
        """What is left of this month's budget once the reservations are spent (None without one)."""
        return None if self.budget is None else max(0.0, self.budget - self.consumed - self.reserved)

    @property
    def service_limit_reached(self) -> bool:
        """Whether the service says the instance's allocation is spent (its jobs are then HELD)."""
        return bool((self.service or {}).get("usage_limit_reached"))
