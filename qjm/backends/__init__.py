"""Backends: what qjm can run on (``catalog``) and where each job of a set goes (``placement``).

- ``info``: ``BackendInfo`` and ``QueueInfo``, the records a user reads.
- ``catalog``: local backends and the service's devices in one list, the service's listing
  read once for every backend and shared through Redis for a few seconds.
- ``placement``: the backend a job of a set over several goes to, and when it moves.
- ``queue``: where a queued remote job stands on its device (qjm's estimate).
"""

from .catalog import Catalog, check_candidates
from .info import BackendInfo, QueueInfo
from .placement import Placement, choose
from .queue import pace_sample, queue_info

__all__ = ["BackendInfo", "Catalog", "Placement", "QueueInfo", "check_candidates", "choose", "pace_sample", "queue_info"]
