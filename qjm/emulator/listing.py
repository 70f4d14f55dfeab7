"""``GET /jobs``: the service's filters, order and paging over this instance's jobs."""

from __future__ import annotations

from typing import Any

from .records import PENDING, Job


def select(jobs: list[Job], query: dict[str, list[str]], instance: str | None) -> dict[str, Any]:
    """Newest first (``sort=ASC``: oldest), filtered like the service (tags: all must match)."""

    def first(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    tags = query.get("tags", [])
    pending = first("pending")
    selected = []
    for j in jobs:
        if (instance and j.instance != instance) or (tags and not all(t in j.tags for t in tags)):
            continue
        if first("session_id") and j.session_id != first("session_id"):
            continue
        if (first("backend") and j.backend != first("backend")) or (first("program") and j.program_id != first("program")):
            continue
        if (pending == "true" and j.status not in PENDING) or (pending == "false" and j.status in PENDING):
            continue
        selected.append(j)
    selected.sort(key=lambda j: j.seq, reverse=first("sort") != "ASC")
    offset = int(first("offset") or 0)
    limit = int(first("limit") or 200)
    page = selected[offset : offset + limit]
    return {"jobs": [j.to_json() for j in page], "count": len(selected), "limit": limit, "offset": offset}
