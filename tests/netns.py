"""Worker hosts as separate network hosts on this machine: Linux network namespaces.

The root namespace plays the Redis (and emulator) host and the switch: a bridge with the
address ``10.213.X.1/24``; each worker host is a namespace whose one veth pair plugs into that
bridge with ``10.213.X.(10+i)``. Pulling a host's cable is ``ip link set <its bridge port> down``:
its packets go nowhere and its open TCP connections just hang (nothing tells it the peer is
gone), which is what a real cut looks like, unlike a killed process or a refused connection.

Every name carries the test process's pid, so parallel runs do not clash, and ``X`` is chosen
free at creation. Only addresses created here are ever used; nothing is routed beyond the bridge.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass, field

#: Test-only range: every /24 used here is 10.213.X.0/24 and exists only on our bridge.
RANGE = ipaddress.IPv4Network("10.213.0.0/16")
PREFIX = "qjmt"  # namespaces qjmt-<pid>-h<i>; bridge qjmt<pid>b; bridge ports qjmt<pid>v<i>
_NS_NAME = re.compile(rf"^{PREFIX}-(\d+)-(?:h\d+|probe)$")
_LINK_NAME = re.compile(rf"^{PREFIX}(\d+)b$")


class NetnsUnavailable(RuntimeError):
    """Namespaces, veths or bridges cannot be made here (not root, no CAP_NET_ADMIN, a container)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done


def why_unavailable() -> str | None:
    """None when a network namespace can be made here, else why not (tried once, then removed)."""
    name = f"{PREFIX}-{os.getpid()}-probe"
    try:
        done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run `ip netns add`: {exc}"
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip() or done.returncode}"
    ip("netns", "del", name, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete namespaces and bridges that an earlier run of these tests left behind when it was
    killed before its teardown (their pid is gone). Only names this module makes are touched."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_pids_in(name)
            ip("netns", "del", name, check=False)
    for line in ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        m = _LINK_NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            ip("link", "del", name, check=False)


def _kill_pids_in(ns: str) -> None:
    """Kill what still runs inside a namespace of ours (processes these tests started there)."""
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of RANGE on no interface of this machine, starting from one picked by our pid."""
    used = [ipaddress.IPv4Interface(a).network for a in re.findall(r"inet (\S+)", ip("-4", "-o", "addr").stdout)]
    subnets: list[ipaddress.IPv4Network] = list(RANGE.subnets(new_prefix=24))[1:-1]
    start = os.getpid() % len(subnets)
    for k in range(len(subnets)):
        net = subnets[(start + k) % len(subnets)]
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsUnavailable(f"no free /24 left in {RANGE}")


@dataclass
class Host:
    """One worker host: a namespace with one cable (a veth pair) into the bridge."""

    ns: str
    port: str  # the veth end on the bridge, in the root namespace: the cable's switch end
    address: str

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it on this host."""
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        """Pull the cable: the host's packets are dropped, its connections hang."""
        ip("link", "set", self.port, "down")

    def heal(self) -> None:
        ip("link", "set", self.port, "up")


@dataclass
class Network:
    """A bridge (the Redis host's address, the switch) and ``n`` worker hosts plugged into it."""

    n: int
    subnet: ipaddress.IPv4Network = field(init=False)
    bridge: str = field(init=False)
    hosts: list[Host] = field(init=False, default_factory=list)
    _created: list[tuple[str, str]] = field(init=False, default_factory=list)

    @property
    def address(self) -> str:
        """The root namespace's address: where Redis and the emulator listen for the hosts."""
        return str(self.subnet.network_address + 1)

    def create(self) -> Network:
        """Make everything; on any failure remove what was made and raise ``NetnsUnavailable``."""
        pid = os.getpid()
        remove_stale()
        try:
            self.subnet = _free_subnet()
            self.bridge = f"{PREFIX}{pid}b"
            ip("link", "add", self.bridge, "type", "bridge")
            self._created.append(("link", self.bridge))
            ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for i in range(self.n):
                ns, port, inner = f"{PREFIX}-{pid}-h{i}", f"{PREFIX}{pid}v{i}", "eth0"
                ip("netns", "add", ns)
                self._created.append(("netns", ns))
                ip("link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns)
                self._created.append(("link", port))
                ip("link", "set", port, "master", self.bridge, "up")
                address = str(self.subnet.network_address + 10 + i)
                ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
                ip("-n", ns, "link", "set", inner, "up")
                ip("-n", ns, "link", "set", "lo", "up")
                self.hosts.append(Host(ns, port, address))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove all of it, whatever state it is in; safe to call twice. Deleting a namespace
        deletes its veth end and so the pair; the bridge goes last."""
        for kind, name in reversed(self._created):
            if kind == "netns":
                _kill_pids_in(name)
                ip("netns", "del", name, check=False)
            else:
                ip("link", "del", name, check=False)
        self._created.clear()

    def leftovers(self) -> list[str]:
        """Names of ours still present (empty after ``close``): for the teardown's own check."""
        pid = os.getpid()
        names = [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.split()]
        links = re.findall(r"^\d+: ([^:@]+)", ip("-o", "link", "show", check=False).stdout, flags=re.M)
        return [n for n in names + links if n.startswith((f"{PREFIX}-{pid}-", f"{PREFIX}{pid}"))]
