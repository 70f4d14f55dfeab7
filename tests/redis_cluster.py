"""A Redis Cluster of 3 masters and 3 replicas on this machine, for the tests, the benchmark and
``make cluster``: ``redis-server --cluster-enabled yes`` six times on free ports, joined by
``redis-cli --cluster create --cluster-replicas 1``, and torn down after.

A master can be killed (SIGKILL) and waited for until its replica has taken its slots over, and
brought back, when it rejoins as a replica of the node that replaced it.
Run ``python -m tests.redis_cluster`` (``make cluster``) to keep one up until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from qjm.ops.cluster import free_port, wait_for

#: Milliseconds a master may stay unreachable before its replica is elected in its place.
NODE_TIMEOUT_MS = 2000
#: Seconds any step of forming or healing the Cluster may take before it counts as failed.
SETTLE_SECONDS = 60


def cluster_port(taken: set[int] | None = None) -> int:
    """A free port for a Cluster node: its bus listens 10,000 above it, so the port must be at most
    55535 and that one free too (an ephemeral port from the kernel is often higher)."""
    for _ in range(200):
        port = free_port()
        if port > 55535 or port in (taken or set()) or port + 10000 in (taken or set()):
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=2,
                           socket_timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisClusterProcesses:
    """Six ``redis-server`` processes in cluster mode: ``masters`` masters, one replica each."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = NODE_TIMEOUT_MS, password: str | None = None) -> None:
        """With ``password``, every node requires it (and replicas give it to their masters); it is
        in no command line (config from stdin, ``REDISCLI_AUTH`` for redis-cli), nor in ``url``."""
        self.masters = masters
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.root = Path(tempfile.mkdtemp(prefix="qjm-rcluster-"))
        taken: set[int] = set()
        self.nodes: list[Node] = []
        for _ in range(2 * masters):
            port = cluster_port(taken)
            taken |= {port, port + 10000}
            self.nodes.append(Node(port, self.root / str(port), password=password))

    @property
    def url(self) -> str:
        """One node (any would do): qjm discovers the rest (with ``QJM_REDIS_CLUSTER=1``)."""
        return f"redis://{self.nodes[0].address}/0"

    def urls_alive(self) -> str:
        return next(f"redis://{n.address}/0" for n in self.nodes if n.alive())

    def _spawn(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        node.proc = subprocess.Popen(
            ["redis-server", *(["-"] if self.password else []), "--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(node.dir),
             "--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms), "--cluster-replica-validity-factor", "0",
             "--maxmemory-policy", "noeviction", "--logfile", "redis.log"],
            stdin=subprocess.PIPE if self.password else None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.password:
            assert node.proc.stdin is not None
            node.proc.stdin.write(f'requirepass "{self.password}"\nmasterauth "{self.password}"\n'.encode())
            node.proc.stdin.close()

    def start(self) -> RedisClusterProcesses:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server and redis-cli are needed (Debian: apt-get install redis-server)")
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            wait_for(lambda n=node: self._answers(n), 10, f"cluster node {node.port} to answer")
        done = subprocess.run(["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                               "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True,
                              timeout=SETTLE_SECONDS, env={**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})})
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        try:
            self.wait_healthy(replicas=self.masters)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self, node: Node) -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            log = node.dir / "redis.log"
            raise RuntimeError(f"cluster node {node.port} exited: {log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
        try:
            return bool(node.client().ping())
        except redis.RedisError:
            return False

    # ------------------------------------------------------------------ what the Cluster says
    def view(self) -> dict[str, dict]:
        """``CLUSTER NODES`` as a live node sees it: address -> flags, master id, slots."""
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                return dict(node.client().execute_command("CLUSTER NODES"))
            except redis.RedisError:
                continue
        raise RuntimeError("no cluster node answers")

    def master_nodes(self) -> list[Node]:
        """The live nodes that are masters with slots now."""
        by_address = {n.address: n for n in self.nodes}
        return [by_address[a] for a, v in self.view().items()
                if "master" in v["flags"] and "fail" not in v["flags"] and v["slots"] and by_address[a].alive()]

    def master_of(self, key: str) -> Node:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        view = self.view()
        for node in self.master_nodes():
            if any(int(r[0]) <= slot <= int(r[-1]) for r in view[node.address]["slots"]):
                return node
        raise RuntimeError(f"no master holds slot {slot}")

    def keys_per_master(self, pattern: str = "qjm:*") -> dict[int, int]:
        """Port of each master -> how many keys matching ``pattern`` it holds."""
        return {n.port: sum(1 for _ in n.client().scan_iter(match=pattern, count=1000)) for n in self.master_nodes()}

    def _healthy(self, replicas: int) -> bool:
        live = [n for n in self.nodes if n.alive()]
        by_address = {n.address: n for n in self.nodes}
        try:
            for node in live:  # every live node must see the same healed Cluster
                if node.client().cluster("info")["cluster_state"] != "ok":
                    return False
                view = dict(node.client().execute_command("CLUSTER NODES"))
                flags = {a: set(v["flags"].split(",")) for a, v in view.items()}
                if any("fail" not in flags[n.address] for n in self.nodes if not n.alive()):
                    return False
                masters = [a for a, v in view.items() if "master" in flags[a] and v["slots"] and by_address[a].alive()]
                if len(masters) != self.masters:
                    return False
            replicas_up = [a for a, f in flags.items() if "slave" in f and by_address[a].alive()]
            synced = sum(by_address[a].client().info("replication").get("master_link_status") == "up"
                         for a in replicas_up)
        except redis.RedisError:
            return False
        return synced >= replicas

    def wait_healthy(self, replicas: int) -> None:
        """Until every live node says ``cluster_state:ok``, ``masters`` masters hold slots and
        ``replicas`` replicas are in sync with theirs."""
        wait_for(lambda: self._healthy(replicas), SETTLE_SECONDS, f"the cluster to be ok with {replicas} replicas in sync",
                 interval=0.2)

    # ------------------------------------------------------------------ faults
    def kill(self, node: Node) -> None:
        """SIGKILL one node, as a host lost."""
        if node.alive():
            assert node.proc is not None
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)

    def kill_master_and_wait(self, node: Node) -> float:
        """SIGKILL a master and wait until a replica has taken its slots over (bounded);
        returns the seconds that took."""
        started = time.monotonic()
        self.kill(node)
        self.wait_healthy(replicas=self.masters - 1)
        assert node not in self.master_nodes()
        return time.monotonic() - started

    def restart(self, node: Node) -> None:
        """Start a killed node again (same port, same ``nodes.conf``): it rejoins, as a replica of
        the master that took its place; waits until that replica is in sync."""
        self._spawn(node)
        wait_for(lambda: self._answers(node), 10, f"cluster node {node.port} to answer")
        self.wait_healthy(replicas=self.masters)

    def role(self, node: Node) -> str:
        return str(node.client().info("replication")["role"])

    def stop(self) -> None:
        for node in self.nodes:
            self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)


def main() -> None:
    cluster = RedisClusterProcesses().start()
    print(f"Redis Cluster of 3 masters, 3 replicas: {' '.join(n.address for n in cluster.nodes)}")
    print(f"export QJM_REDIS_CLUSTER=1 QJM_REDIS_URL={cluster.url}   (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
