"""A job set's tags: the user's own, and qjm's reserved ``qjm:*`` tags beside them on every remote job.

The user's ``job_tags`` go on every job posted to the service, after qjm's tags' rules are
checked: each is a label (``qjm.client.labels``, the rule a set's name follows too), a user tag may not
start with ``qjm:`` (those say which set, job and attempt a remote job belongs to, and are never
removed), and the whole list must fit the service's tag limits. Those limits are checked here,
before anything is written, so the service never refuses a post or a retag for its tags. A
retag reaches remote jobs through a worker, which has the credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..engine.runners.remote import job_tags
from ..errors import InvalidInputError
from ..executors import Executor
from ..store import JobRecord, Store
from .labels import check_label

log = logging.getLogger(__name__)

#: The prefix of qjm's own tags (``runners.remote.job_tags``).
RESERVED_PREFIX = "qjm:"
#: qjm's own tags on each remote job: the set, the job, the attempt.
RESERVED_PER_JOB = 3
#: The service's limits on a job's tags (its error codes 1204 "maximum number of tags" and 1205
#: "maximum length of a tag"). IBM's registry names the limits without their values; these are
#: the values qjm assumes and qjm's emulator enforces.
SERVICE_MAX_TAGS = 20
SERVICE_MAX_TAG_LENGTH = 100
#: A user tag may take what the reserved tags leave.
MAX_USER_TAGS = SERVICE_MAX_TAGS - RESERVED_PER_JOB


def check_user_tags(tags: Iterable[str] | None, what: str = "job_tags") -> list[str]:
    """The user's tags as a list (duplicates dropped, order kept), or an error saying what to fix."""
    if tags is None:
        return []
    if isinstance(tags, str):
        raise InvalidInputError(f"{what} must be a list of strings, e.g. {what}=['sweep'], not a string.")
    try:
        out = list(dict.fromkeys(tags))
    except TypeError:
        raise InvalidInputError(f"{what} must be a list of strings, not {type(tags).__name__}.") from None
    for t in out:  # a string, not blank, short enough, nothing a terminal acts on (``qjm.client.labels``)
        check_label(t, f"{what}: the tag", SERVICE_MAX_TAG_LENGTH)
    reserved = [t for t in out if t.startswith(RESERVED_PREFIX)]
    if reserved:
        raise InvalidInputError(f"{what}: tags starting with {RESERVED_PREFIX!r} are qjm's own ({reserved[0]!r}); "
                                "choose another prefix.")
    if len(out) > MAX_USER_TAGS:
        raise InvalidInputError(f"{what}: {len(out)} tags, but a job takes at most {SERVICE_MAX_TAGS} of which "
                                f"qjm uses {RESERVED_PER_JOB}; give at most {MAX_USER_TAGS}.")
    return out


def updated_tags(current: list[str], replacement_tags: Iterable[str] | None = None,
                 additional_tags: Iterable[str] | None = None,
                 removal_tags: Iterable[str] | None = None) -> list[str]:
    """The old Job Manager's rule: start from ``replacement_tags`` if given (else the current
    tags), add ``additional_tags``, take away ``removal_tags``. Checked as a whole."""
    base = check_user_tags(replacement_tags, "replacement_tags") if replacement_tags is not None else list(current)
    added = check_user_tags(additional_tags, "additional_tags")
    removed = set(check_user_tags(removal_tags, "removal_tags"))
    return check_user_tags([t for t in dict.fromkeys(base + added) if t not in removed], "the resulting tags")


def retag_job_set(store: Store, executor_for: Callable[[str], Executor], sid: str) -> int:
    """A worker's part of a retag: every posted job of the set (earlier attempts too) gets the
    set's tags as they are now, beside its reserved ones. Returns how many jobs were updated; a
    job the service refuses is skipped (logged), the others go on."""
    rec = store.job_set(sid)
    executor = executor_for(rec.backend)
    if executor.local:
        return 0
    done = 0
    for i, attempt, remote_id in posted_jobs(store.jobs(sid, rec.n_jobs)):
        try:
            executor.update_tags(remote_id, [*rec.tags, *job_tags(sid, i, attempt)])
            done += 1
        except Exception as exc:  # noqa: BLE001 - one job's refusal must not stop the others
            log.warning("retagging job %s of set %s failed: %s", remote_id, sid, exc)
    return done


def posted_jobs(records: Iterable[JobRecord]) -> list[tuple[int, int, str]]:
    """``(job, attempt, remote id)`` of every post of these jobs, earlier attempts too."""
    out: list[tuple[int, int, str]] = []
    for job in records:
        out += [(job.index, int(past["attempt"]), str(past["remote_id"])) for past in job.history
                if past.get("remote_id")]
        if job.remote_id:
            out.append((job.index, job.attempt, job.remote_id))
    return out
