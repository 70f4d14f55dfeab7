"""Redis work per job: commands, CPU and bytes, over one set of 1,000 one-circuit jobs on aer_simulator.

Redis is what every worker host shares, so its cost per job bounds how far qjm scales out. Task
events are on and a real Flower listens (its event stream is part of the traffic). The figures are
deltas of ``INFO commandstats`` (every command, those run inside qjm's Lua scripts included),
``INFO cpu`` (the server's user + system time) and ``INFO stats`` (bytes in + out), divided by the
number of jobs; they include the idle work of the connected workers and Flower over the run.

Small local jobs share a Celery message (``qjm.engine.dispatch.RUN_CIRCUITS``: 8 of these to a message):
the Redis broker is also measured with one message per job (``QJM_JOBS_PER_MESSAGE=1``), to show
what a message costs.

Run with the Redis broker (queues, unacked messages and events in Redis too) and with a
RabbitMQ broker (``QJM_BENCH_AMQP``, default ``amqp://guest:guest@127.0.0.1:5672``), where Redis
holds qjm's own state only: the second figure is qjm's share, the difference Celery's. RabbitMQ
runs in a private vhost made with ``rabbitmqctl`` when it can be (so other users of that broker
are not disturbed); otherwise that half is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from typing import Any

from qiskit import QuantumCircuit

from qjm import JobManager
from qjm.ops.cluster import RedisProcess, WorkerProcess, free_port, process_env, wait_for

N_JOBS = 1000
GOALS = {"commands": 40, "cpu_ms": 0.5, "kib": 10}
AMQP = os.environ.get("QJM_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")


def circuit(k: int) -> QuantumCircuit:
    qc = QuantumCircuit(2, name=f"c{k}")
    if k & 1:
        qc.x(0)
    qc.measure_all()
    return qc


def snapshot(r: Any) -> dict[str, Any]:
    stats = r.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})
    cpu = r.info("cpu")
    net = r.info("stats")
    return {"calls": calls, "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "bytes": int(net["total_net_input_bytes"]) + int(net["total_net_output_bytes"])}


class Flower:
    """``qjm flower`` on a free port, listening to the broker's task events."""

    def __init__(self, redis_url: str, **env: str) -> None:
        self.port = free_port()
        qjm = os.path.join(os.path.dirname(sys.executable), "qjm")
        self.proc = subprocess.Popen([qjm, "flower", "--no-auth", "--address=127.0.0.1", f"--port={self.port}"],
                                     env=process_env(redis_url, **env), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait_ready(self) -> Flower:
        import urllib.request

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthcheck", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(answers, 120, "Flower to answer", interval=0.3)
        return self

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Vhost:
    """A private RabbitMQ vhost, or None when ``rabbitmqctl`` cannot make one."""

    def __init__(self) -> None:
        self.name = f"qjm-bench-{uuid.uuid4().hex[:8]}"

    def create(self) -> str | None:
        if shutil.which("rabbitmqctl") is None:
            return None
        try:
            for args in (["add_vhost", self.name], ["set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"]):
                subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
        except (subprocess.SubprocessError, OSError):
            return None
        return f"{AMQP.rstrip('/')}/{self.name}"

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True, timeout=60)


def client_env(stack: ExitStack, **env: str) -> None:
    """Set the client's environment for the rest of ``stack``."""
    for name, value in env.items():
        old = os.environ.get(name)
        os.environ[name] = value
        stack.callback(lambda n=name, o=old: os.environ.__setitem__(n, o) if o is not None else os.environ.pop(n, None))


def measure(broker: str | None, jobs_per_message: int | None = None) -> dict[str, Any]:
    """Run one set of ``N_JOBS`` one-circuit jobs; Redis's work per job while it ran. With
    ``jobs_per_message``, the client sends that many jobs per message at most (``QJM_JOBS_PER_MESSAGE``)."""
    env = {"QJM_BROKER_URL": broker} if broker else {}
    with ExitStack() as stack:
        redis = RedisProcess().start()
        stack.callback(redis.stop)
        worker = WorkerProcess(redis.url, concurrency=2, **env).wait_ready()
        stack.callback(worker.stop)
        flower = Flower(redis.url, **env).wait_ready()
        stack.callback(flower.stop)
        client_env(stack, **env, **({"QJM_JOBS_PER_MESSAGE": str(jobs_per_message)} if jobs_per_message else {}))
        jm = JobManager(redis.url)
        jm.run([circuit(k) for k in range(4)], backend="aer_simulator", max_experiments_per_job=1,
               shots=16).results(timeout=300)  # warm the pool processes
        r = redis.client()
        circuits = [circuit(k) for k in range(N_JOBS)]
        before, t0 = snapshot(r), time.perf_counter()
        results = jm.run(circuits, backend="aer_simulator", max_experiments_per_job=1, shots=16).results(timeout=900)
        elapsed = time.perf_counter() - t0
        after = snapshot(r)
        assert results.success and results.get_counts(N_JOBS - 1) == {"01": 16}
    calls = after["calls"] - before["calls"]
    return {"commands": sum(calls.values()) / N_JOBS, "cpu_ms": (after["cpu"] - before["cpu"]) * 1000 / N_JOBS,
            "kib": (after["bytes"] - before["bytes"]) / 1024 / N_JOBS, "seconds": elapsed,
            "top": [(name, n / N_JOBS) for name, n in calls.most_common(12)]}


def show(label: str, m: dict[str, Any]) -> None:
    print(f"  {label:<16}: {m['commands']:6.1f} commands, {m['cpu_ms']:5.2f} ms CPU, {m['kib']:6.2f} KiB per job "
          f"(set took {m['seconds']:.1f} s)")
    print("    by command    : " + ", ".join(f"{name} {n:.1f}" for name, n in m["top"]))


def main() -> dict[str, Any]:
    print(f"Redis work per job ({N_JOBS} one-circuit jobs on aer_simulator, 2 worker processes, task events "
          f"on, Flower listening); goals <= {GOALS['commands']} commands, {GOALS['cpu_ms']} ms, {GOALS['kib']} KiB:")
    out = {"redis": measure(None)}
    show("Redis broker", out["redis"])
    out["redis_one_per_message"] = measure(None, jobs_per_message=1)
    show("  1 job/message", out["redis_one_per_message"])
    vhost = Vhost()
    amqp = vhost.create()
    if amqp is None:
        print("  RabbitMQ broker : skipped (no rabbitmqctl to make a private vhost)")
        return out
    try:
        out["rabbitmq"] = measure(amqp)
    finally:
        vhost.delete()
    show("RabbitMQ broker", out["rabbitmq"])
    print(f"  qjm's own share : {out['rabbitmq']['commands']:.1f} commands; Celery's with the Redis broker: "
          f"{out['redis']['commands'] - out['rabbitmq']['commands']:.1f} commands, "
          f"{out['redis']['kib'] - out['rabbitmq']['kib']:.2f} KiB")
    return out


if __name__ == "__main__":
    main()
