"""The service's devices as plain records: one listing request serves every backend."""

from __future__ import annotations

from typing import Any

from . import client_patches
from .account import Account, backend_for, service_for
from .errors import call


def list_devices(account: Account) -> list[dict[str, Any]]:
    """``name``, ``num_qubits``, ``operational``, ``status_message`` and ``pending_jobs`` of every
    device the account sees. A device the listing gives no qubit count for is asked for its
    configuration once per process (``backend_for`` caches it)."""
    service = service_for(account)
    raw = call(lambda: client_patches.listed_devices(service), "backend listing")
    out = []
    for device in raw:
        name = device.get("name")
        if not isinstance(name, str):
            continue
        status = device.get("status") or {}
        state = status.get("name", "online") if isinstance(status, dict) else str(status)
        qubits = device.get("qubits")
        if not isinstance(qubits, int):
            qubits = int(backend_for(account, name).num_qubits)
        reason = status.get("reason", "") if isinstance(status, dict) else ""
        out.append({"name": name, "num_qubits": qubits, "operational": state == "online",
                    "status_message": state if not reason else f"{state}: {reason}",
                    "pending_jobs": max(0, int(device.get("queue_length") or 0))})
    return out
