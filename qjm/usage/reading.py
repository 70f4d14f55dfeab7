"""What a set and an instance consumed, read from Redis (``qjm.store.usage`` writes it)."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import InvalidInputError
from ..lifecycle import JobStatus
from ..store import JobSetRecord, Store
from ..store.records import USAGE_FIELDS
from ..store.usage import month
from .instance import ServiceFigures, instance_key, instance_name
from .records import InstanceUsage, SetUsage


def set_usage(store: Store, rec: JobSetRecord) -> SetUsage:
    """The set's QPU seconds: its record's counts, plus the estimates of jobs not yet posted."""
    jobs = store.jobs(rec.id, rec.n_jobs, fields=USAGE_FIELDS)
    waiting = [job for job in jobs if not job.status.final and job.reserved_attempt is None]
    ahead = sum(job.estimate for job in waiting if job.estimate is not None)
    return SetUsage(consumed=rec.qpu_consumed, reserved=rec.qpu_reserved,
                    estimate=rec.qpu_consumed + rec.qpu_reserved + ahead, budget=rec.qpu_budget,
                    by_backend=dict(rec.qpu_by_backend),
                    held=sum(1 for job in jobs if job.status is JobStatus.HELD),
                    unestimated=sum(1 for job in waiting if job.estimate is None))


def check_budget(seconds: Any, what: str = "max_qpu_seconds") -> float | None:
    """A budget of QPU seconds as given by a user: a positive number, or None for none."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise InvalidInputError(f"{what} must be a positive number of QPU seconds, or None for no budget; "
                                f"got {seconds!r}.")
    return float(seconds)


def instance_usage(store: Store, cfg: Settings, instance: str | None = None) -> InstanceUsage:
    """The instance's month: qjm's own counts, its budget, and the service's figures (the shared
    answer, asked again only when it is older than ``QJM_SERVICE_USAGE_SECONDS``)."""
    if instance is not None:
        from dataclasses import replace

        cfg = replace(cfg, ibm_instance=instance)
    period = month()
    figures = store.usage.month_figures(instance_key(cfg), period)
    return InstanceUsage(instance=instance_name(cfg), period=period, consumed=figures.consumed,
                         reserved=figures.reserved, budget=cfg.qpu_seconds_per_month,
                         service=ServiceFigures(store, cfg).answer())
