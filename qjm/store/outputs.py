"""Where a job's output lives: one value per job, or parts of one when it is larger than a Redis
value should be (``QJM_RESULT_CHUNK_BYTES``). ``qjm.formats.outputs`` decides what an output holds;
this module only stores and reads its bytes, so a reader never loads more than one job's."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from ..errors import JobSetNotFoundError
from ..formats import codec
from . import keys

#: How a result value that lists its parts begins (no output is a JSON object with this key).
PARTS = b'{"qjm_parts"'


class Outputs:
    def __init__(self, r: redis.Redis, ttl: int, chunk_bytes: int) -> None:
        self.r: Any = r  # sync and binary: answers are bytes (see ``Store``)
        self.ttl = ttl
        self.chunk_bytes = max(1024, chunk_bytes)

    def read(self, sid: str, i: int) -> bytes | None:
        """A job's stored output as written (``qjm.formats.outputs``), its parts joined."""
        raw = self.r.get(keys.result(sid, i))
        names = part_keys(sid, i, raw)
        if not names:
            return raw
        parts = self.r.mget(names)
        if any(part is None for part in parts):
            raise JobSetNotFoundError(f"Job set {sid!r}: part of job {i}'s results has expired.")
        return b"".join(parts)

    def parts(self, sid: str, i: int) -> list[str]:
        """The keys of job ``i``'s output parts, if it was stored in parts."""
        return part_keys(sid, i, self.r.get(keys.result(sid, i)))

    def write_parts(self, sid: str, i: int, output: bytes) -> bytes:
        """An output larger than one value may be is written in parts first; returns what the
        job's result key holds (the output itself, or the list of its parts), which is written
        with the job's DONE status."""
        if len(output) <= self.chunk_bytes:
            return output
        token = uuid.uuid4().hex[:16]
        n = -(-len(output) // self.chunk_bytes)
        p = self.r.pipeline(transaction=False)
        for k in range(n):
            p.set(keys.result_part(sid, i, token, k), output[k * self.chunk_bytes:(k + 1) * self.chunk_bytes],
                  ex=self.ttl)
        p.execute()
        return codec.dumps({"qjm_parts": {"token": token, "n": n, "bytes": len(output)}})

    def legacy_combined(self, sid: str) -> dict[str, Any] | None:
        """The one combined value of a set stored before results were kept per job."""
        return codec.loads(self.r.get(keys.combined(sid)))


def part_keys(sid: str, i: int, raw: bytes | None) -> list[str]:
    """The keys of the parts a job's stored result value names; none for a value stored whole."""
    if raw is None or not raw.startswith(PARTS):
        return []
    manifest = codec.loads(raw)["qjm_parts"]
    return [keys.result_part(sid, i, manifest["token"], k) for k in range(manifest["n"])]
