"""Where each job of a set over several backends runs.

A job is placed when it is about to be transpiled, on the operational candidate with enough
qubits and the fewest jobs ahead of it (``BackendInfo.ahead`` plus qjm's jobs already placed
there and waiting for a slot); devices are taken to run jobs at the same pace, so fewer jobs
ahead is the shorter wait. Among equals, jobs take turns by index. From then on the job waits
in that backend's FIFO for one of its pending-job slots.

A job waiting for a slot moves (is transpiled again for another candidate) when its backend
went offline, or when another candidate would start it more than one job sooner: a full
backend does not hold a job a less busy one could take. A posted job never moves: the service
runs what it has queued, even on a device in maintenance, once it is back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..config import Settings
from ..errors import RetryLater
from ..store import JobRecord, JobSetRecord, Store
from ..store.keys import job_ref
from .catalog import Catalog
from .info import BackendInfo
from .queue import ahead_at_post

log = logging.getLogger(__name__)

#: Seconds between looks when no backend of a set is online (the listing is re-read by then).
OFFLINE_RETRY = 5.0



@dataclass(frozen=True)
class Load:
    info: BackendInfo
    #: qjm's jobs placed on the backend and waiting for a slot.
    waiting: int

    @property
    def ahead(self) -> int:
        return self.info.ahead + self.waiting


def choose(loads: list[Load], width: int, turn: int = 0) -> Load | None:
    """The operational backend, wide enough, with the fewest jobs ahead; ``turn`` breaks ties."""
    fit = [load for load in loads if load.info.operational and load.info.num_qubits >= width]
    if not fit:
        return None
    least = min(load.ahead for load in fit)
    tied = sorted((load for load in fit if load.ahead == least), key=lambda load: load.info.name)
    return tied[turn % len(tied)]


def offline_note(loads: list[Load]) -> str:
    return "no backend of the set is online (" + "; ".join(
        f"{load.info.name}: {load.info.status_message}" for load in loads) + ")"


class Placement:
    def __init__(self, store: Store, cfg: Settings, catalog: Catalog | None = None) -> None:
        self.store, self.cfg = store, cfg
        self.catalog = catalog or Catalog(store, cfg)

    def loads(self, rec: JobSetRecord, ref: str | None = None) -> tuple[list[Load], dict[str, int | None]]:
        infos = self.catalog.infos(rec.candidates)
        slots = self.store.slots.loads(rec.candidates, ref)
        loads = [Load(infos[b], 0 if infos[b].local else slots[b][1]) for b in rec.candidates]
        return loads, {b: slots[b][2] for b in rec.candidates}

    def place(self, rec: JobSetRecord, i: int, width: int) -> str:
        """The backend job ``i`` goes to now. Raises RetryLater (the set waits, visibly) when no
        candidate wide enough is online."""
        loads, _ = self.loads(rec)
        best = choose(loads, width, turn=i)
        if best is None:
            raise self._offline(rec, loads)
        self.store.set_job_fields(rec.id, i, backend=best.info.name, width=str(width))
        self.note_used(rec.id, best.info.name)
        return best.info.name

    def note_used(self, sid: str, backend: str) -> None:
        """A job of the set was placed on ``backend``: the first time, list the set under it
        (at most one index write per backend and set; the reconciler's repair makes up for a
        crash in between)."""
        if self.store.placing.mark_used(sid, backend):
            self.store.index.update(self.store.job_set(sid))

    def reconsider(self, rec: JobSetRecord, job: JobRecord) -> str | None:
        """Another backend for a placed job that waits for a slot, or None to stay. Raises
        RetryLater when no candidate wide enough is online."""
        here, ref = rec.job_backend(job), job_ref(rec.id, job.index)
        loads, ranks = self.loads(rec, ref)
        width = self.store.placing.job_width(rec.id, job.index)
        by_name = {load.info.name: load for load in loads}
        mine = by_name[here]
        others = [load for load in loads if load.info.name != here]
        best = choose(others, width, turn=job.index)
        if not mine.info.operational:
            if best is None:
                raise self._offline(rec, loads)
            return best.info.name
        if best is None or (mine.info.remaining_jobs_count or 0) > 0:
            return None
        rank = ranks[here]
        my_ahead = mine.info.ahead + (mine.waiting if rank is None else rank)
        return best.info.name if best.ahead + 1 < my_ahead else None

    def queue_ahead(self, backend: str) -> int | None:
        """Jobs the device has ahead of a post made now (``qjm.backends.queue``), if the listing
        says: only an estimate's input, so a listing that cannot be read leaves it unknown."""
        try:
            listed = self.catalog.others_queued(backend)
        except Exception as exc:  # noqa: BLE001 - the post goes on without it
            log.info("the queue of %s could not be read: %s", backend, exc)
            return None
        if listed is None:
            return None
        # qjm's count holds this job's own slot (taken before the post).
        return ahead_at_post(max(0, self.store.slots.in_use(backend) - 1), *listed, self.store.durations.pace(backend))

    def _offline(self, rec: JobSetRecord, loads: list[Load]) -> RetryLater:
        note = offline_note(loads)
        self.store.placing.note_set(rec.id, waiting_for=note, waiting_noted=repr(time.time()))
        return RetryLater(f"job set {rec.id}: {note}", OFFLINE_RETRY)
