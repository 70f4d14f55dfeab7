"""The whole Redis key schema of qjm, in one place.

Every key of one job set carries the set's id as a Redis Cluster hash tag (``qjm:{<id>}:...``),
so a script or transaction on one set touches one slot; one backend's slot pool likewise shares
the tag ``{slots:<backend>}``. ``SCHEMA`` is bumped when keys change shape; sets written by an
older schema are recognised (``legacy_job_set``) and refused with a message naming the fix.
"""

from __future__ import annotations

import re

from ..errors import JobSetNotFoundError

PREFIX = "qjm"
SCHEMA = 2

#: Sorted set: job-set id -> creation time (newest first listing).
INDEX = f"{PREFIX}:sets"
#: Sorted set: ids of the sets not yet final -> creation time (the reconciler's work list).
RUNNING = f"{PREFIX}:running"
#: Sorted set: queue name -> the highest ticket (``queue_seq``) whose task has started.
QUEUES_STARTED = f"{PREFIX}:queues:started"
#: String: held by the one reconciler that runs a tick.
RECONCILER_LOCK = f"{PREFIX}:reconciler"
#: String: when a reconciler last saw Redis restart (its ``run_id`` change).
REDIS_RESTARTED = f"{PREFIX}:redis-restarted"
#: String: the ``run_id`` the reconciler saw last.
REDIS_RUN_ID = f"{PREFIX}:redis-run-id"
#: Hash: step -> how many times the reconciler re-sent it (``qjm_reconciler_resent_total``).
RESENT = f"{PREFIX}:metrics:resent"
#: Sorted set: job-set id -> when its keys expire; the listing indexes drop expired ids lazily.
SETS_EXPIRY = f"{PREFIX}:sets:expiry"
#: Hash: job-set id -> JSON of what the set is listed under (``store.index.Entry``).
SETS_ENTRIES = f"{PREFIX}:sets:entries"
#: Job-set ids are what ``new_job_set_id`` makes; anything else is an unknown id, never a key.
JOB_SET_ID = re.compile(r"^[0-9a-f]{32}$")
#: What an id looks like, for the message that refuses anything else.
JOB_SET_ID_SHAPE = ("a job-set id is 32 hexadecimal characters (0-9 and a-f, in either case), as `qjm run` prints "
                    "and job_set_id() returns")


def job_set_id(raw: object) -> str:
    """A job-set id as the keys spell it. Ids are case-insensitive (hex, written in lower case by
    ``new_job_set_id``) and blanks around one are dropped; whatever else is not an id is refused
    here, with what an id looks like, and never reaches a key."""
    sid = raw.strip().lower() if isinstance(raw, str) else None
    if sid is None or not JOB_SET_ID.match(sid):
        shown = repr(raw) if len(repr(raw)) <= 48 else repr(raw)[:40] + "..."
        raise JobSetNotFoundError(f"No job set with id {shown}: {JOB_SET_ID_SHAPE}.")
    return sid


def _set(sid: str) -> str:
    return f"{PREFIX}:{{{sid}}}"


def job_set(sid: str) -> str:
    """Hash: the job-set record (``records.JobSetRecord``)."""
    return f"{_set(sid)}:set"


def names(sid: str) -> str:
    """JSON list: the name of every experiment, in input order."""
    return f"{_set(sid)}:names"


def combined(sid: str) -> str:
    """JSON: the combined result of a set finished by qjm before results were kept per job
    (read, never written: sets now keep one result per job, ``result``)."""
    return f"{_set(sid)}:result"


def layout(sid: str) -> str:
    """JSON: a pub set's pieces per job (``qjm.formats.pubs.Piece``), to stitch pub results back."""
    return f"{_set(sid)}:layout"


def final_channel(sid: str) -> str:
    """Pub/sub channel on which a set's final status is announced once."""
    return f"{_set(sid)}:final"


def batch_lock(sid: str) -> str:
    """Lock held while the set's remote batch is opened."""
    return f"{_set(sid)}:batch-lock"


def metrics_seen(sid: str) -> str:
    """Set: which of the set's observations the latency histograms had counted (written by qjm
    before each observation came from the one transition that made it; removed with the set)."""
    return f"{_set(sid)}:metrics-seen"


def job(sid: str, i: int) -> str:
    """Hash: one job's record (``records.JobRecord``)."""
    return f"{_set(sid)}:job:{i}"


def circuits(sid: str, i: int) -> str:
    """QPY: the job's circuits as given."""
    return f"{job(sid, i)}:circuits"


def isa(sid: str, i: int) -> str:
    """QPY: the job's circuits transpiled for the backend."""
    return f"{job(sid, i)}:isa"


def pubs(sid: str, i: int) -> str:
    """JSON: the JSON half of the job's pieces (``qjm.formats.pubs.piece_entry``), for pub sets."""
    return f"{job(sid, i)}:pubs"


def prepared(sid: str, i: int) -> str:
    """JSON text: the executor's client-side preparation of the job (``Executor.prepare``)."""
    return f"{job(sid, i)}:prepared"


def result(sid: str, i: int) -> str:
    """The job's output (``qjm.formats.outputs``): experiment records, or a PrimitiveResult's JSON."""
    return f"{job(sid, i)}:result"


def result_part(sid: str, i: int, token: str, k: int) -> str:
    """Bytes: part ``k`` of a job output too large for one value; ``token`` is unique to the
    write, so a losing redelivery's parts never mix with the winner's (they expire unread)."""
    return f"{job(sid, i)}:result:{token}:{k}"


def posting_lock(sid: str, i: int) -> str:
    """Lock held while one delivery posts the job to a remote service."""
    return f"{job(sid, i)}:posting"


def job_ref(sid: str, i: int) -> str:
    """How a job is named inside a backend's slot pool."""
    return f"{sid}:{i}"


def parse_job_ref(ref: str) -> tuple[str, int]:
    sid, _, i = ref.rpartition(":")
    return sid, int(i)


def slots(backend: str) -> str:
    """Hash: job ref -> lease expiry, one field per pending remote job of the backend."""
    return f"{PREFIX}:{{slots:{backend}}}:leases"


def waiting(backend: str) -> str:
    """Sorted set: job refs waiting for a slot, by when they started waiting (FIFO)."""
    return f"{PREFIX}:{{slots:{backend}}}:waiting"


def backends_listing(account: str) -> str:
    """JSON ``{"at", "devices"}``: the service's device listing for one account (``qjm.backends.catalog``),
    shared by every process for a few seconds."""
    return f"{PREFIX}:{{backends:{account}}}:listing"


def backends_refresh(account: str) -> str:
    """String with a short expiry: held by the one process that refreshes the listing."""
    return f"{PREFIX}:{{backends:{account}}}:refresh"


def durations(backend: str) -> str:
    """Hash: ``mean``/``dev`` of how long the backend's recent jobs took (``qjm.engine.polling``)."""
    return f"{PREFIX}:durations:{{{backend}}}"


def pace(backend: str) -> str:
    """Hash: ``mean``/``dev`` of the seconds the device took per job ahead of qjm's (``qjm.backends.queue``)."""
    return f"{PREFIX}:pace:{{{backend}}}"


def runs(backend: str) -> str:
    """Hash: what qjm's polls saw of a device's jobs running (``qjm.store.runs``)."""
    return f"{PREFIX}:runs:{{{backend}}}"


def usage_month(instance: str, period: str) -> str:
    """Hash: an instance's QPU seconds in one UTC month (``period``, ``YYYY-MM``): ``reserved``,
    ``consumed`` and one ``r:<attempt ref>`` field per reservation held (``qjm.store.usage``)."""
    return f"{PREFIX}:{{usage:{instance}}}:{period}"


def usage_totals(instance: str) -> str:
    """Hash: backend -> QPU seconds the instance's qjm jobs were charged there, ever (never reset:
    the ``qjm_qpu_seconds_total`` counter)."""
    return f"{PREFIX}:{{usage:{instance}}}:totals"


def service_usage(instance: str) -> str:
    """JSON ``{"at", "answer"}``: the service's own usage figures for an instance (``service.usage()``),
    asked at most once a minute and shared by every process (``qjm.usage.service``)."""
    return f"{PREFIX}:{{usage:{instance}}}:service"


def service_usage_refresh(instance: str) -> str:
    """String with a short expiry: held by the one process that asks the service for its usage."""
    return f"{PREFIX}:{{usage:{instance}}}:service-refresh"


def histogram(metric: str, backend: str) -> str:
    """Hash: a latency histogram's bucket counts, ``count`` and ``sum`` (``qjm.ops.metrics``)."""
    return f"{PREFIX}:metrics:{metric}:{{{backend}}}"


def queue_seq(queue: str) -> str:
    """Counter: tickets handed to the steps sent to a queue, in the order they were sent."""
    return f"{PREFIX}:queue:{{{queue}}}:seq"


def worker_alive(node: str) -> str:
    """String with a short expiry: present while the worker node ``node`` is alive."""
    return f"{PREFIX}:worker:{{{node}}}"


def sets_by(field: str, value: str) -> str:
    """Sorted set: ids of the sets whose ``field`` (name, tag, backend, status) is ``value`` ->
    creation time (``store.index``)."""
    return f"{PREFIX}:sets:{field}:{value}"


def tombstone(sid: str) -> str:
    """String: present once the set was deleted, so late tasks end quietly (``qjm.client.deletion``)."""
    return f"{_set(sid)}:deleted"


def set_keys(sid: str, n_jobs: int) -> list[str]:
    """Every key a set of ``n_jobs`` jobs may have (its tombstone and the parts of outputs
    stored in parts aside: ``Outputs.parts`` names those)."""
    out = [job_set(sid), names(sid), combined(sid), layout(sid), batch_lock(sid), metrics_seen(sid)]
    for i in range(n_jobs):
        out += [job(sid, i), circuits(sid, i), isa(sid, i), pubs(sid, i), prepared(sid, i), result(sid, i),
                posting_lock(sid, i)]
    return out


def legacy_job_set(sid: str) -> str:
    """Where schema 1 (qjm 0.1) kept a job set's record."""
    return f"{PREFIX}:set:{sid}"
