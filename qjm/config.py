"""Every setting qjm reads, in one place, so workers and clients agree.

Settings come from the environment once, when a ``Settings`` is made; nothing in qjm reads
``os.environ`` elsewhere or writes it at run time (the one exception is ``qjm.executors.ibm.client_patches``,
which hands the IBM client the two variables it reads only from the environment). A child process
gets its environment from ``child_env``, never by changing ours.

Secrets stay out of sight: the Redis password may come from ``QJM_REDIS_PASSWORD`` or a file named by
``QJM_REDIS_PASSWORD_FILE`` (so it is in no command line), ``Settings.redis_url`` and ``broker`` then carry
it, and whatever shows a URL shows ``mask_url(url)``; ``repr(Settings)`` masks too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from urllib.parse import parse_qs, quote, urlsplit

from .errors import SettingsError

DAY = 24 * 3600
#: What a yes/no variable (``QJM_REDIS_CLUSTER``) may say for yes.
TRUE = ("1", "true", "yes", "on")
MASK = "**"
REDIS_PASSWORD_ENV = "QJM_REDIS_PASSWORD"
REDIS_PASSWORD_FILE_ENV = "QJM_REDIS_PASSWORD_FILE"
#: What ``ssl_cert_reqs`` may say in a ``rediss://`` URL (redis-py, kombu and Celery all accept these).
CERT_REQS = ("required", "optional", "none", "CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE")
_SECRET_QUERY = re.compile(r"([?&](?:password|ssl_password)=)[^&#]*", re.IGNORECASE)


def mask_url(url: str | None) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``**``.

    Call it wherever a URL is shown (errors, log lines, reports, banners): a Redis or broker URL
    may carry the password. Anything that does not parse as a URL is hidden whole.
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed netloc
    except ValueError:
        return "<URL hidden: it does not parse>"
    head = f"{parts.scheme}://"
    if not url.startswith(head) or not parts.netloc:
        return _SECRET_QUERY.sub(rf"\g<1>{MASK}", url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    rest = url[len(head) + len(parts.netloc):]
    return head + netloc + _SECRET_QUERY.sub(rf"\g<1>{MASK}", rest)


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a program qjm execs (worker, Flower): ours, plus ``overrides``.

    Built as a new dict, so passing a setting to a child never changes this process's environment.
    """
    return {**os.environ, **overrides}


#: The IBM client's own variables a worker is started with unless its environment has them: unless
#: ``USAGE_DATA_OPT_OUT`` is ``True`` the client walks the whole call stack on every request, to
#: name a calling Qiskit application in a header (none is ever found in a worker): 20-30 ms a post
#: or status check. The client reads it only from the environment, so it is given at start.
WORKER_CLIENT_ENV = {"USAGE_DATA_OPT_OUT": "True"}


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` (a worker's environment to be) with ``WORKER_CLIENT_ENV`` where it says nothing."""
    return {**WORKER_CLIENT_ENV, **env}


def _env(name: str) -> str | None:
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else None


def _int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw is not None else default


def _float(name: str, default: float) -> float:
    raw = _env(name)
    return float(raw) if raw is not None else default


def _opt_float(name: str) -> float | None:
    raw = _env(name)
    if raw is None or raw.lower() == "none":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds (or 'none').") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: a budget of QPU seconds cannot be negative.")
    return value


def _redis_password() -> str | None:
    """``QJM_REDIS_PASSWORD``, else the first line of the file ``QJM_REDIS_PASSWORD_FILE`` names
    (a Docker or Kubernetes secret mounted as a file, say)."""
    password, path = _env(REDIS_PASSWORD_ENV), _env(REDIS_PASSWORD_FILE_ENV)
    if password and path:
        raise SettingsError(f"Set {REDIS_PASSWORD_ENV} or {REDIS_PASSWORD_FILE_ENV}, not both.")
    if path is None:
        return password
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"Cannot read {REDIS_PASSWORD_FILE_ENV}={path}: {exc.strerror or exc}.") from None
    if not first:
        raise SettingsError(f"{REDIS_PASSWORD_FILE_ENV}={path} is empty; its first line must be the Redis password.")
    return first


def is_redis_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("redis", "rediss")


def check_redis_url(url: str, variable: str) -> None:
    """Refuse a ``rediss://`` URL that Celery would refuse later with a bare ValueError.

    Celery's Redis result backend needs ``ssl_cert_reqs`` in the query of every ``rediss://`` URL;
    say so, with what to add, before any client or worker starts.
    """
    if urlsplit(url).scheme != "rediss":
        return
    query = parse_qs(urlsplit(url).query)
    reqs = query.get("ssl_cert_reqs", [None])[-1]
    if reqs is None:
        raise SettingsError(
            f"{variable}={mask_url(url)} is a rediss:// (TLS) URL without ssl_cert_reqs: add "
            "?ssl_cert_reqs=required&ssl_ca_certs=/path/to/ca.pem to verify the server "
            "(ssl_cert_reqs=none turns verification off).")
    if reqs not in CERT_REQS:
        raise SettingsError(f"{variable}={mask_url(url)} has ssl_cert_reqs={reqs}; use one of {', '.join(CERT_REQS[:3])}.")


def redis_ssl_options(url: str) -> dict[str, object] | None:
    """The TLS options a ``rediss://`` URL's query gives, as Celery's ``broker_use_ssl`` wants them
    (Flower reads the broker's TLS from there, not from the URL); None for any other URL."""
    import ssl

    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    reqs = query.get("ssl_cert_reqs", "required").upper()
    options: dict[str, object] = {"ssl_cert_reqs": getattr(ssl, reqs if reqs.startswith("CERT_") else f"CERT_{reqs}")}
    options.update({k: query[k] for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if k in query})
    return options


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its user part, unless it has a password of its own."""
    parts = urlsplit(url)
    if parts.password is not None or not parts.hostname:
        return url
    head = f"{parts.scheme}://"
    user = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    hostport = parts.netloc.rpartition("@")[2]
    return f"{head}{user}:{quote(password, safe='')}@{hostport}{url[len(head) + len(parts.netloc):]}"


def _same_server(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.hostname, pa.port or 6379) == (pb.hostname, pb.port or 6379)


@dataclass(frozen=True)
class Settings:
    #: Redis holding every job set's state, and Celery's broker unless ``QJM_BROKER_URL`` names another.
    redis_url: str = field(default_factory=lambda: _env("QJM_REDIS_URL") or "redis://localhost:6379/0")
    #: A separate Celery broker (``redis://`` or RabbitMQ's ``amqp://``); none: the Redis URL.
    broker_url: str | None = field(default_factory=lambda: _env("QJM_BROKER_URL"))
    #: Celery's result backend (none: the Redis URL), when it must not share qjm's Redis: a Redis Cluster
    #: holds qjm's state, but Celery's Redis result backend knows no Cluster (qjm stores no task results,
    #: but Celery opens it). Must be given, off the Cluster, with ``QJM_REDIS_CLUSTER=1``.
    result_backend_url: str | None = field(default_factory=lambda: _env("QJM_RESULT_BACKEND_URL"))
    #: ``QJM_REDIS_CLUSTER=1``: ``redis_url`` names one node of a Redis Cluster, which the store
    #: then speaks to through redis-py's ``RedisCluster`` (``qjm.store.connection``); the broker and the
    #: result backend must then be given, off the Cluster.
    redis_cluster: bool = field(default_factory=lambda: (_env("QJM_REDIS_CLUSTER") or "0").lower() in TRUE)
    #: How long a write that guards an outside effect (the record that a remote post begins) waits
    #: for a replica to have it, on a Redis Cluster (``WAIT``), in milliseconds.
    replica_wait_ms: int = field(default_factory=lambda: _int("QJM_REPLICA_WAIT_MS", 1000))
    #: How long job sets, their circuits and results are kept, in seconds (Celery stores no task results).
    ttl_seconds: int = field(default_factory=lambda: _int("QJM_TTL_SECONDS", 14 * DAY))
    #: Redis broker visibility timeout: an unacknowledged task is redelivered after this many seconds;
    #: longer than the longest single task (a large job's transpilation or simulation).
    visibility_timeout: int = field(default_factory=lambda: _int("QJM_VISIBILITY_TIMEOUT", 3600))
    #: Longest pause between two polls of one job, in seconds; kept far below the visibility timeout.
    max_poll_interval: int = field(default_factory=lambda: _int("QJM_MAX_POLL_INTERVAL", 60))
    #: Shortest pause between two polls of one job, in seconds, except near its expected end (polls are
    #: spaced at a tenth of a job's age).
    min_poll_interval: float = field(default_factory=lambda: _float("QJM_MIN_POLL_INTERVAL", 0.1))
    #: Pending remote jobs allowed per IBM backend, across all job sets and workers.
    max_pending_jobs: int = field(default_factory=lambda: _int("QJM_MAX_PENDING_JOBS", 3))
    #: QPU seconds qjm may spend per instance and UTC month, over every set (none: no limit).
    qpu_seconds_per_month: float | None = field(default_factory=lambda: _opt_float("QJM_QPU_SECONDS_PER_MONTH"))
    #: Seconds the service's answer to ``service.usage()`` is shared before it is asked again.
    service_usage_seconds: float = field(default_factory=lambda: _float("QJM_SERVICE_USAGE_SECONDS", 60.0))
    #: Seconds the service's device listing (status, queue) is shared before it is asked again.
    backends_cache_seconds: float = field(default_factory=lambda: _float("QJM_BACKENDS_CACHE_SECONDS", 5.0))
    #: Experiments per job when neither the caller nor the backend says otherwise.
    default_max_experiments: int = field(default_factory=lambda: _int("QJM_DEFAULT_MAX_EXPERIMENTS", 100))
    #: Cap on circuits x shots in one job (IBM's Sampler limit is 10 million executions).
    max_executions_per_job: int = field(default_factory=lambda: _int("QJM_MAX_EXECUTIONS_PER_JOB", 10_000_000))
    #: Largest single Redis value qjm writes for a job's output; larger outputs are stored in parts
    #: (Redis refuses values over ``proto-max-bulk-len``, 512 MB by default).
    result_chunk_bytes: int = field(default_factory=lambda: _int("QJM_RESULT_CHUNK_BYTES", 32 * 1024 * 1024))
    #: Log level, in workers, of the libraries they call (Qiskit, Aer, the IBM client): at INFO the
    #: transpiler logs every pass of every circuit, and a small job ran half again as slow.
    library_log_level: str = field(default_factory=lambda: (_env("QJM_LIBRARY_LOG_LEVEL") or "WARNING").upper())
    #: How long a step that could have run may stay unstarted (or a started one stay on a dead
    #: worker) before the reconciler re-sends it, in seconds (the operations guide, "What qjm guarantees").
    #: The same everywhere; tests use 3 s.
    reconcile_grace: float = field(default_factory=lambda: _float("QJM_RECONCILE_GRACE", 60.0))
    #: Most small local jobs one Celery message carries (``qjm.engine.dispatch.jobs_per_message``); 1 gives
    #: every job a message (and a task of its own in Flower), at a message's broker cost per job.
    jobs_per_message: int = field(default_factory=lambda: _int("QJM_JOBS_PER_MESSAGE", 8))
    #: Aer threads per worker process: qjm scales by processes, so one thread each by default.
    sim_threads: int = field(default_factory=lambda: _int("QJM_SIM_THREADS", 1))
    #: Flower's basic-auth user (``qjm flower``); give both user and password, or neither.
    flower_user: str | None = field(default_factory=lambda: _env("QJM_FLOWER_USER"), repr=False)
    #: Flower's basic-auth password; without user and password ``qjm flower`` refuses to start unless ``--no-auth``.
    flower_password: str | None = field(default_factory=lambda: _env("QJM_FLOWER_PASSWORD"), repr=False)
    #: IBM Quantum API key, from the client's own standard variable (else its saved account).
    ibm_token: str | None = field(default_factory=lambda: _env("QISKIT_IBM_TOKEN"), repr=False)
    #: IBM Quantum instance (its CRN): where jobs run and whose QPU time the monthly budget counts.
    ibm_instance: str | None = field(default_factory=lambda: _env("QISKIT_IBM_INSTANCE"))
    #: IBM Quantum channel, as the client takes it (else the client's default or saved account).
    ibm_channel: str | None = field(default_factory=lambda: _env("QISKIT_IBM_CHANNEL"))
    #: IBM Quantum API's address, as the client takes it; point it at ``qjm emulator`` for a dry run.
    ibm_url: str | None = field(default_factory=lambda: _env("QISKIT_IBM_URL"))
    #: Redis's password when it is not in the URL: ``QJM_REDIS_PASSWORD``, or the first line of the file
    #: ``QJM_REDIS_PASSWORD_FILE`` names (a mounted secret), not both.
    redis_password: str | None = field(default_factory=_redis_password, repr=False)

    def __post_init__(self) -> None:
        """Put the password into the URLs (so every user of ``redis_url``/``broker`` just works)
        and refuse a TLS URL that Celery would refuse later."""
        if self.redis_password:
            object.__setattr__(self, "redis_url", with_password(self.redis_url, self.redis_password))
            # A broker on the same Redis server shares its password; another server never gets it.
            for name in ("broker_url", "result_backend_url"):
                url = getattr(self, name)
                if url and is_redis_url(url) and _same_server(url, self.redis_url):
                    object.__setattr__(self, name, with_password(url, self.redis_password))
        check_redis_url(self.redis_url, "QJM_REDIS_URL")
        if self.broker_url and is_redis_url(self.broker_url):
            check_redis_url(self.broker_url, "QJM_BROKER_URL")
        if self.result_backend_url and is_redis_url(self.result_backend_url):
            check_redis_url(self.result_backend_url, "QJM_RESULT_BACKEND_URL")
        if self.redis_cluster:
            self._check_off_cluster()
        if self.jobs_per_message < 1:
            raise SettingsError(f"QJM_JOBS_PER_MESSAGE={self.jobs_per_message}: a message carries at least one job "
                                "(1 sends one message per job).")

    def _check_off_cluster(self) -> None:
        """Celery's Redis broker and result backend know no Cluster: with qjm's state on one, both
        must be named, and neither may be a node of it (``redis_url``'s server)."""
        for variable, url in (("QJM_BROKER_URL", self.broker_url), ("QJM_RESULT_BACKEND_URL", self.result_backend_url)):
            if url is None:
                raise SettingsError(
                    f"QJM_REDIS_CLUSTER=1 puts qjm's state on a Redis Cluster, where Celery cannot keep its own: "
                    f"set {variable} to a RabbitMQ (amqp://...) or a plain Redis (redis://...) server off the Cluster.")
            if is_redis_url(url) and _same_server(url, self.redis_url):
                raise SettingsError(
                    f"{variable}={mask_url(url)} is the Redis Cluster node QJM_REDIS_URL names: Celery cannot "
                    "use a Cluster; point it at RabbitMQ or a plain Redis off the Cluster.")

    def __repr__(self) -> str:
        """Every shown field, URLs masked; secrets (``repr=False`` fields) left out."""
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            shown.append(f"{f.name}={mask_url(value)!r}" if f.name.endswith("_url") and value else f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret these settings hold (passwords, the IBM token), for ``redact``."""
        found = {self.redis_password, self.flower_password, self.ibm_token}
        for url in (self.redis_url, self.broker_url, self.result_backend_url):
            try:
                found.add(urlsplit(url).password if url else None)
            except ValueError:
                pass
        return tuple(s for s in found if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret of these settings (plain or URL-quoted) replaced by ``**``:
        the last guard before a message or traceback is printed."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, MASK)
        return text

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

    @property
    def result_backend(self) -> str:
        return self.result_backend_url or self.redis_url


def settings() -> Settings:
    """Fresh settings from the current environment (cheap; read per call so tests can change it)."""
    return Settings()
