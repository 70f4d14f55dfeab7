"""Every setting qjm reads, in one place, so workers and clients agree.

Settings come from the environment once, when a ``Settings`` is made; nothing in qjm reads
``os.environ`` elsewhere or writes it at run time (the one exception is ``qjm.executors.ibm.client_patches``,
which hands the IBM client the two variables it reads only from the environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DAY = 24 * 3600


def _env(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else None


def _int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw is not None else default


def _float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw is not None else default


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(default_factory=lambda: _env("QJM_REDIS_URL") or "redis://localhost:6379/0")
    broker_url: str | None = field(default_factory=lambda: _env("QJM_BROKER_URL"))
    #: How long job sets, their circuits and results are kept (and Celery results expire).
    ttl_seconds: int = field(default_factory=lambda: _int("QJM_TTL_SECONDS", 14 * DAY))
    #: Redis broker visibility timeout: an unacknowledged task is redelivered after this long.
    visibility_timeout: int = field(default_factory=lambda: _int("QJM_VISIBILITY_TIMEOUT", 3600))
    #: Longest pause between two polls of one job; kept far below the visibility timeout.
    max_poll_interval: int = field(default_factory=lambda: _int("QJM_MAX_POLL_INTERVAL", 60))
    #: Shortest pause between two polls of one job (polls are spaced at a tenth of a job's age).
    min_poll_interval: float = field(default_factory=lambda: _float("QJM_MIN_POLL_INTERVAL", 0.1))
    #: Pending remote jobs allowed per IBM backend, across all job sets and workers.
    max_pending_jobs: int = field(default_factory=lambda: _int("QJM_MAX_PENDING_JOBS", 3))
    #: Experiments per job when neither the caller nor the backend says otherwise.
    default_max_experiments: int = field(default_factory=lambda: _int("QJM_DEFAULT_MAX_EXPERIMENTS", 100))
    #: Cap on circuits x shots in one job (IBM's Sampler limit is 10 million executions).
    max_executions_per_job: int = field(default_factory=lambda: _int("QJM_MAX_EXECUTIONS_PER_JOB", 10_000_000))
    #: How long a step that could have run may stay unstarted (or a started one stay on a dead
    #: worker) before the reconciler re-sends it. See README, "What qjm guarantees".
    reconcile_grace: float = field(default_factory=lambda: _float("QJM_RECONCILE_GRACE", 60.0))
    #: Aer threads per worker process: qjm scales by processes, so one thread each by default.
    sim_threads: int = field(default_factory=lambda: _int("QJM_SIM_THREADS", 1))
    #: Flower's basic auth (``qjm flower``); both or neither.
    flower_user: str | None = field(default_factory=lambda: _env("QJM_FLOWER_USER"), repr=False)
    flower_password: str | None = field(default_factory=lambda: _env("QJM_FLOWER_PASSWORD"), repr=False)
    #: IBM Quantum account, from the client's own standard variables (else its saved account).
    ibm_token: str | None = field(default_factory=lambda: _env("QISKIT_IBM_TOKEN"), repr=False)
    ibm_instance: str | None = field(default_factory=lambda: _env("QISKIT_IBM_INSTANCE"))
    ibm_channel: str | None = field(default_factory=lambda: _env("QISKIT_IBM_CHANNEL"))
    ibm_url: str | None = field(default_factory=lambda: _env("QISKIT_IBM_URL"))

    @property
    def poll_cap(self) -> float:
        """The longest countdown qjm gives a task: under a quarter of the visibility timeout, so
        a countdown a worker holds is never mistaken for a lost task and delivered twice."""
        return min(float(self.max_poll_interval), self.visibility_timeout / 4)

    @property
    def reconcile_interval(self) -> float:
        """How often each worker runs the reconciler (one of them does the work per tick)."""
        return max(0.5, min(10.0, self.reconcile_grace / 4))

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url


def settings() -> Settings:
    """Fresh settings from the current environment (cheap; read per call so tests can change it)."""
    return Settings()


def mask_url(url: str) -> str:
    """The URL as it may be shown: any password replaced by ``**``."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)
