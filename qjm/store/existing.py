"""Writes to the hash of a set or a job that only land while it exists
(``scripts/update_existing.lua``).

A task, or the reconciler, may read a set's record just before the set is deleted or expires,
and write to it just after. A plain ``HSET`` would then bring back a hash of it with no expiry,
kept for ever; these writes find it gone and change nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from redis.commands.core import Script

from . import scripts


class ExistingHashes:
    def __init__(self, r: redis.Redis) -> None:
        self._update = scripts.load(r, "update_existing")

    @property
    def script(self) -> Script:
        """The script itself, for a caller that runs it its own way (``connection.write_durably``)."""
        return self._update

    def set(self, key: str, fields: Mapping[str, Any], client: Any = None) -> bool:
        """HSET ``fields`` (None as ''); False if the hash is gone."""
        args = ["set"]
        for k, v in fields.items():
            args += [k, "" if v is None else str(v)]
        return bool(self._update(keys=[key], args=args, client=client))

    def set_new(self, key: str, field: str, value: str) -> bool:
        """HSETNX: True for the one caller that set the field; False if it was set or the hash is gone."""
        return bool(self._update(keys=[key], args=["setnx", field, value]))

    def incr(self, key: str, by: Mapping[str, int], client: Any = None) -> Any:
        """HINCRBY each field; the new values in order (None if the hash is gone). In a pipeline
        (``client``), the answer comes with the pipeline's."""
        args = ["incr"]
        for k, v in by.items():
            args += [k, str(v)]
        return self._update(keys=[key], args=args, client=client)
