"""How the store reaches Redis: one server, or a Redis Cluster (``QJM_REDIS_CLUSTER=1``).

On a Cluster, redis-py's ``RedisCluster`` follows ``MOVED``/``ASK`` and, on a connection error,
a timeout or ``CLUSTERDOWN`` (a master died and its replica is not yet elected), refreshes its
slot map and retries with a bounded, jittered backoff: long enough in total to ride out a
failover of a few seconds' ``cluster-node-timeout``, short enough that a Cluster really gone
ends as an error. Every step of qjm is idempotent, so a write sent twice (once before its
answer was lost) changes nothing the second time.

Replication is asynchronous: a write the old master acknowledged may be lost on failover.
``write_durably`` makes a write that guards an outside effect wait for a replica (``WAIT``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ..config import mask_url
from ..errors import StoreUnavailableError

log = logging.getLogger(__name__)

#: Retries of one command on a Cluster, with a backoff from 0.05 s doubling up to 1 s: about 20 s
#: in all, several times what a failover takes with ``cluster-node-timeout`` of a few seconds.
CLUSTER_RETRIES = 24
BACKOFF_BASE, BACKOFF_CAP = 0.05, 1.0
#: Attempts of ``write_durably`` (each on the slot's master of the moment): as long as the
#: client's own retries (about 20 s), since a failover on a loaded machine took longer than 8.
DURABLE_ATTEMPTS = CLUSTER_RETRIES
CONNECTION_KWARGS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30, "health_check_interval": 30}


def connect(url: str, cluster: bool) -> Any:
    """A sync, binary client for ``url``: a ``RedisCluster`` that discovers the whole Cluster
    from the one node ``url`` names, or a plain ``Redis``."""
    if not cluster:
        return redis.Redis.from_url(url, **CONNECTION_KWARGS)
    retry = Retry(ExponentialWithJitterBackoff(base=BACKOFF_BASE, cap=BACKOFF_CAP), retries=CLUSTER_RETRIES)
    try:  # a Cluster client reads the slot map as it is made
        return RedisCluster.from_url(url, retry=retry, **CONNECTION_KWARGS)
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise StoreUnavailableError(
            f"The Redis Cluster at {mask_url(url)} refused the password ({exc}): set QJM_REDIS_PASSWORD or "
            "QJM_REDIS_PASSWORD_FILE to its requirepass.") from None
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        wants_password = any(sign in str(exc) for sign in ("NOAUTH", "WRONGPASS", "authenticated", "password"))
        hint = " (it asks for the right password: set QJM_REDIS_PASSWORD or QJM_REDIS_PASSWORD_FILE)" if wants_password else ""
        raise StoreUnavailableError(
            f"Cannot read the slot map of a Redis Cluster from {mask_url(url)} ({exc}){hint}. Check that the node "
            "is up and in cluster mode, or unset QJM_REDIS_CLUSTER for a single Redis.") from None


def is_cluster(r: Any) -> bool:
    return isinstance(r, RedisCluster)


def node_run_id(r: Any, key: str | None = None) -> str:
    """The ``run_id`` of the server holding ``key``: on a Cluster, the master of its slot (a
    failover gives the slot a master with another ``run_id``); with no key, one id made of every
    master's, which changes when any of them does."""
    if not is_cluster(r):
        return str(r.info("server")["run_id"])
    if key is not None:
        return str(r.info("server", target_nodes=r.get_node_from_key(key))["run_id"])
    answers = r.info("server", target_nodes=RedisCluster.PRIMARIES)
    ids = sorted(str(a["run_id"]) for a in answers.values()) if isinstance(answers, dict) and \
        all(isinstance(a, dict) for a in answers.values()) else [str(answers["run_id"])]
    return "cluster:" + hashlib.sha1(",".join(ids).encode()).hexdigest()


def write_durably(r: Any, script: Script, key: str, args: list[Any], wait_ms: int) -> Any:
    """Run ``script`` on ``key`` and, on a Cluster, wait up to ``wait_ms`` for a replica of the
    slot's master to have it (``WAIT 1``, on the connection that wrote). Returns the script's
    answer. A ``WAIT`` that times out (no replica in reach) is logged: the write stands, as
    durable as any other, and qjm's look at the service before a post covers its loss."""
    if not is_cluster(r):
        return script(keys=[key], args=args)
    last: Exception | None = None
    for attempt in range(DURABLE_ATTEMPTS):
        node = r.get_node_from_key(key)
        p = r.get_redis_connection(node).pipeline(transaction=False)
        script(keys=[key], args=args, client=p)  # a plain pipeline loads the script if the node lacks it
        p.execute_command("WAIT", 1, wait_ms)
        try:
            answer, replicas = p.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            # MOVED (a replica took the slot over), CLUSTERDOWN, or the master gone: look again.
            last = exc
            time.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
            try:
                r.nodes_manager.initialize()
            except redis.RedisError as again:  # the Cluster is still electing: try once more
                last = again
            continue
        if int(replicas) < 1:
            log.warning("no replica acknowledged the write to %s within %d ms", key, wait_ms)
        return answer
    raise redis.ConnectionError(f"the write to {key} found no master of its slot after {DURABLE_ATTEMPTS} tries: {last}")
