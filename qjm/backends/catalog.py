"""Every backend qjm can run on, as ``BackendInfo`` records: the local ones (the fake devices,
``aer_simulator``) and the devices of the configured IBM Quantum account.

The service's listing (``GET /backends``) carries each device's status, queue length and qubits,
so one request serves every backend. It is shared through Redis for
``QJM_BACKENDS_CACHE_SECONDS``: many workers placing jobs read it, one of them at a time asks
the service again (the others keep the older listing meanwhile). qjm's own in-flight counts
come from the backends' slot pools, fresh on every read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..config import Settings
from ..errors import InvalidInputError, UnknownBackendError
from ..executors import is_local, local_backend_names, local_qubits, remote_devices
from ..formats import codec
from ..store import Store, keys
from .info import BackendInfo

Filter = Callable[[BackendInfo], bool]


def _account_key(cfg: Settings) -> str:
    """Which account a listing belongs to (never the token: keys are visible to anyone with Redis)."""
    seed = f"{cfg.ibm_channel}|{cfg.ibm_instance}|{(cfg.ibm_url or '').rstrip('/')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


class Catalog:
    def __init__(self, store: Store, cfg: Settings, devices: Callable[[], list[dict[str, Any]] | None] = remote_devices,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.cfg, self._fetch, self._clock = store, cfg, devices, clock

    # ------------------------------------------------------------------ the service's listing
    def devices(self) -> dict[str, dict[str, Any]]:
        """Name -> the service's listing entry, at most ``backends_cache_seconds`` old unless
        another process is refreshing it right now."""
        account = _account_key(self.cfg)
        key, r, now = keys.backends_listing(account), self.store.r, self._clock()
        raw = r.get(key)
        cached = codec.loads(raw) if raw else None
        fresh = cached is not None and now - float(cached["at"]) < self.cfg.backends_cache_seconds
        if fresh or (cached is not None and not r.set(keys.backends_refresh(account), "1", nx=True, ex=30)):
            return {d["name"]: d for d in cached["devices"]}  # type: ignore[index]
        try:
            listed = self._fetch() or []
        finally:
            if cached is not None:
                r.delete(keys.backends_refresh(account))
        # qjm's own pending jobs as the listing was taken: the rest of its queue is other users'.
        mine = self.store.slots.in_use_many([d["name"] for d in listed])
        listed = [{**d, "qjm_pending": mine[d["name"]], "listed_at": now} for d in listed]
        r.set(key, codec.dumps({"at": now, "devices": listed}), ex=max(60, int(10 * self.cfg.backends_cache_seconds)))
        return {d["name"]: d for d in listed}

    def others_queued(self, name: str) -> tuple[int, float] | None:
        """Other users' jobs on a device's queue in the (cached) listing, and its age in seconds;
        None when the listing lacks the device (or predates this count)."""
        d = self.devices().get(name)
        if d is None or "qjm_pending" not in d:
            return None
        return max(0, int(d["pending_jobs"]) - int(d["qjm_pending"])), max(0.0, self._clock() - float(d["listed_at"]))

    # ------------------------------------------------------------------ records
    def infos(self, names: Iterable[str]) -> dict[str, BackendInfo]:
        """These backends' records (a name the listing lacks reads as not operational)."""
        names = list(names)
        remote = self.devices() if any(not is_local(n) for n in names) else {}
        in_flight = self.store.slots.in_use_many(names)
        out = {}
        for name in names:
            if is_local(name):
                out[name] = BackendInfo(name, local_qubits(name), simulator=True, local=True, operational=True,
                                        status_message="active", pending_jobs=0, in_flight=0, job_limit=None)
                continue
            d = remote.get(name)
            out[name] = BackendInfo(
                name, int(d["num_qubits"]) if d else 0, simulator=False, local=False,
                operational=bool(d and d["operational"]),
                status_message=d["status_message"] if d else "not listed by the service",
                pending_jobs=int(d["pending_jobs"]) if d else 0, in_flight=in_flight[name],
                job_limit=self.cfg.max_pending_jobs)
        return out

    def backends(self, name: str | None = None, min_num_qubits: int | None = None, operational: bool | None = None,
                 simulator: bool | None = None, filters: Filter | None = None) -> list[BackendInfo]:
        """Every backend qjm can run on that matches, local ones first, each group by name."""
        if filters is not None and not callable(filters):
            raise InvalidInputError("filters must be a callable taking a BackendInfo, e.g. lambda b: b.num_qubits >= 5.")
        names = local_backend_names() + sorted(self.devices())
        if name is not None:
            names = [n for n in names if n == name]
        out = []
        for info in self.infos(names).values():
            if min_num_qubits is not None and info.num_qubits < min_num_qubits:
                continue
            if operational is not None and info.operational != operational:
                continue
            if simulator is not None and info.simulator != simulator:
                continue
            if filters is not None and not filters(info):
                continue
            out.append(info)
        return out

    def least_busy(self, min_num_qubits: int | None = None, filters: Filter | None = None,
                   **criteria: Any) -> BackendInfo:
        """The operational backend with the fewest jobs ahead (the service's queue, or qjm's
        own in-flight jobs there when that is more); local backends only when asked for
        (``simulator=True``, or ``filters``), since they have no queue to compare."""
        criteria.setdefault("simulator", False)
        found = [b for b in self.backends(min_num_qubits=min_num_qubits, operational=True, filters=filters, **criteria)]
        if not found:
            asked = ", ".join(f"{k}={v}" for k, v in {"min_num_qubits": min_num_qubits, **criteria}.items())
            known = ", ".join(sorted(b.name for b in self.backends())) or "none"
            raise UnknownBackendError(f"No operational backend matches ({asked}). Backends qjm knows: {known}.")
        return min(found, key=lambda b: (b.ahead, b.name))

    def remote_names(self) -> list[str]:
        return sorted(self.devices())


def check_candidates(names: list[str], known_remote: Callable[[], list[str]]) -> list[str]:
    """A fan-out list as given to ``run``: no name twice, no local and remote mixed. Unknown names
    are refused by the caller's own look-up of each target."""
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if twice:
        raise InvalidInputError(f"backend list names {', '.join(twice)} more than once: give each backend once.")
    local = [n for n in names if is_local(n)]
    if local and len(local) != len(names):
        remote = [n for n in names if not is_local(n)]
        raise InvalidInputError(
            f"backend list mixes local ({', '.join(local)}) and remote ({', '.join(remote)}) backends: a set runs "
            f"either on local simulators or on the service. Remote backends of this account: "
            f"{', '.join(known_remote()) or 'none'}.")
    return names
