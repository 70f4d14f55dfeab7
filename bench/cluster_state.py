"""qjm's state on a Redis Cluster of 3 masters and 3 replicas (``tests.redis_cluster``) against one Redis.

* Redis work per job: one set of ``N_JOBS`` one-circuit jobs on aer_simulator (2 worker processes,
  broker on RabbitMQ, Celery's results on a plain Redis, no Flower), on one Redis and on the
  Cluster. Commands are ``INFO commandstats`` deltas summed over the masters (a replica re-runs
  what its master sends it; its CPU is given apart), CPU is user + system time, per job.
* Spread: 300 sets written as ``run()`` writes them; each master's share of their keys against the
  mean (goal: within 25 %).
* Listing: ``job_sets(limit=10)`` among 200,000 sets made as ``bench/listing.py`` makes them
  (goal < 50 ms): the indexes are single keys, so the query talks to one master.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import listing  # noqa: E402
import redis  # noqa: E402
from redis_cost import Vhost, circuit, client_env  # noqa: E402

from qjm import JobManager  # noqa: E402
from qjm.cluster import RedisProcess, WorkerProcess  # noqa: E402
from qjm.testing import create_job_set  # noqa: E402
from tests.redis_cluster import RedisClusterProcesses  # noqa: E402

N_JOBS = 1000
N_SPREAD = 300
N_LISTED = 200_000
SPREAD_GOAL = 0.25
LIST_GOAL_MS = 50.0
#: Seconds the servers' idle CPU is measured over, to tell it from the set's.
IDLE_SECONDS = 5.0


def work(clients: list[redis.Redis]) -> dict[str, Any]:
    calls: Counter[str] = Counter()
    cpu = 0.0
    for r in clients:
        for name, v in r.info("commandstats").items():
            calls[name.removeprefix("cmdstat_")] += int(v["calls"])
        info = r.info("cpu")
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return {"calls": calls, "cpu": cpu}


def cost(url: str, masters: list[redis.Redis], replicas: list[redis.Redis], env: dict[str, str]) -> dict[str, Any]:
    with ExitStack() as stack:
        worker = WorkerProcess(url, concurrency=2, **env).wait_ready()
        stack.callback(worker.stop)
        client_env(stack, QJM_REDIS_URL=url, **env)
        jm = JobManager(url)
        jm.run([circuit(k) for k in range(4)], backend="aer_simulator", max_experiments_per_job=1,
               shots=16).results(timeout=300)  # warm the pool processes
        idle0 = work(masters)["cpu"]
        time.sleep(IDLE_SECONDS)  # what the servers spend idle (a Cluster's nodes ping each other)
        idle = (work(masters)["cpu"] - idle0) / IDLE_SECONDS
        before, rep_before, t0 = work(masters), work(replicas), time.perf_counter()
        results = jm.run([circuit(k) for k in range(N_JOBS)], backend="aer_simulator", max_experiments_per_job=1,
                         shots=16).results(timeout=900)
        elapsed = time.perf_counter() - t0
        after, rep_after = work(masters), work(replicas)
        assert results.success and results.get_counts(N_JOBS - 1) == {"01": 16}
    calls = after["calls"] - before["calls"]
    return {"commands": sum(calls.values()) / N_JOBS, "cpu_ms": (after["cpu"] - before["cpu"]) * 1000 / N_JOBS,
            "busy_cpu_ms": (after["cpu"] - before["cpu"] - idle * elapsed) * 1000 / N_JOBS,
            "replica_cpu_ms": (rep_after["cpu"] - rep_before["cpu"]) * 1000 / N_JOBS, "seconds": elapsed,
            "top": [(name, n / N_JOBS) for name, n in calls.most_common(8)]}


def show(label: str, m: dict[str, Any]) -> None:
    extra = f", replicas {m['replica_cpu_ms']:.2f} ms" if m["replica_cpu_ms"] else ""
    print(f"  {label:<12}: {m['commands']:5.1f} commands, {m['cpu_ms']:5.2f} ms CPU per job "
          f"({m['busy_cpu_ms']:.2f} ms above idle){extra} "
          f"(set took {m['seconds']:.1f} s)")
    print("    by command: " + ", ".join(f"{name} {n:.1f}" for name, n in m["top"]))


def spread(cluster: RedisClusterProcesses, jm: JobManager) -> dict[int, int]:
    for k in range(N_SPREAD):
        create_job_set(jm.store, [circuit(k)], "aer_simulator", name=f"spread-{k}")
    return cluster.keys_per_master("qjm:{*")


def listed(jm: JobManager) -> float:
    t0 = time.time() - 10 * N_LISTED
    start = time.perf_counter()
    listing.fill(jm, 0, N_LISTED, t0)
    made = time.perf_counter() - start
    ms, found = listing.timed(lambda: jm.job_sets(limit=10))
    assert len(found) == 10
    by_name, _ = listing.timed(lambda: jm.job_sets(name="sweep-42", limit=10))
    print(f"  listing    : {N_LISTED:,} sets (made in {made:.0f} s): newest 10 in {ms:.2f} ms, by name {by_name:.2f} ms "
          f"(median of {listing.REPEAT}; goal < {LIST_GOAL_MS:.0f} ms)")
    return ms


def main() -> dict[str, Any]:
    out: dict[str, Any] = {}
    vhost = Vhost()
    amqp = vhost.create()
    if amqp is None:
        print("cluster: skipped (no rabbitmqctl to make a private vhost; a Cluster needs a broker off it)")
        return out
    print(f"Redis Cluster (3 masters, 3 replicas) against one Redis: {N_JOBS} one-circuit jobs on aer_simulator")
    with ExitStack() as stack:
        stack.callback(vhost.delete)
        results = RedisProcess().start()
        stack.callback(results.stop)
        env = {"QJM_BROKER_URL": amqp, "QJM_RESULT_BACKEND_URL": results.url}
        one = RedisProcess().start()
        stack.callback(one.stop)
        out["one"] = cost(one.url, [one.client()], [], env)
        show("one Redis", out["one"])
        cluster = RedisClusterProcesses().start()
        stack.callback(cluster.stop)
        masters = cluster.master_nodes()
        replicas = [n for n in cluster.nodes if n not in masters]
        cenv = {**env, "QJM_REDIS_CLUSTER": "1"}
        out["cluster"] = cost(cluster.url, [n.client() for n in masters], [n.client() for n in replicas], cenv)
        show("Cluster", out["cluster"])
        for name in ("FLUSHALL",):
            for n in masters:
                n.client().execute_command(name)
        client_env(stack, QJM_REDIS_URL=cluster.url, **cenv)
        jm = JobManager(cluster.url)
        per = spread(cluster, jm)
        mean = statistics.mean(per.values())
        worst = max(abs(v - mean) / mean for v in per.values())
        out["spread"] = worst
        print(f"  spread     : keys of {N_SPREAD} sets per master {sorted(per.values())}, worst {worst:.0%} "
              f"from the mean (goal within {SPREAD_GOAL:.0%})")
        out["list_ms"] = listed(jm)
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
