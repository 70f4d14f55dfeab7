"""``JobManager.job_sets``: finding sets by name, tags, backend and status, newest first, from
the store's indexes (``qjm.store.index``), with every filter checked before Redis is asked."""

from __future__ import annotations

from ..config import Settings
from ..errors import InvalidInputError, JobSetNotFoundError
from ..lifecycle import JobSetStatus
from ..store import Store
from .job_set import ManagedJobSet


def _status(status: JobSetStatus | str | None) -> str | None:
    if status is None:
        return None
    try:
        return JobSetStatus(str(status).upper()).value
    except ValueError:
        raise InvalidInputError(f"status must be one of {', '.join(s.value for s in JobSetStatus)}, "
                                f"got {status!r}.") from None


def job_sets(store: Store, cfg: Settings, name: str | None = None, tags: list[str] | None = None,
             backend: str | None = None, status: JobSetStatus | str | None = None,
             limit: int | None = None) -> list[ManagedJobSet]:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidInputError(f"limit must be a whole number of at least 0, or None for all, got {limit!r}.")
    if isinstance(tags, str) or (tags is not None and not all(isinstance(t, str) for t in tags)):
        raise InvalidInputError("tags must be a list of strings, e.g. tags=['sweep'].")
    for what, value in (("name", name), ("backend", backend)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}.")
    store.ping()
    if limit == 0:
        return []
    out = []
    for sid in store.index.query(name, tags, backend, _status(status), limit):
        try:
            out.append(ManagedJobSet(sid, store, cfg))
        except JobSetNotFoundError:  # expired (or deleted) between the index and the read
            continue
    return out
