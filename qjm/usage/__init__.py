"""QPU time: qjm's estimate of a job's cost, budgets per set and per instance, the service's own
limit, and what sets and instances consumed (README, "QPU time")."""

from __future__ import annotations

from .budget import HELD_RETRY, Held, QpuTime
from .estimate import JOB_OVERHEAD_SECONDS, job_seconds
from .instance import ServiceFigures, instance_key, instance_name
from .posting import QpuGate
from .reading import check_budget, instance_usage, set_usage
from .records import InstanceUsage, SetUsage

__all__ = ["HELD_RETRY", "Held", "QpuTime", "QpuGate", "JOB_OVERHEAD_SECONDS", "job_seconds", "ServiceFigures",
           "instance_key", "instance_name", "InstanceUsage", "SetUsage", "check_budget", "instance_usage", "set_usage"]
