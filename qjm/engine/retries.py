"""Which job failures are transient, in one table: a job that failed so runs again by itself, up
to ``run(..., max_retries=N)`` times, each time as a new attempt (a new post with its own tag).

Remote jobs: the service's reason code says. IBM's error code registry tells the user to
"retry the action" for ``RETRY_CODES``; every other code (e.g. 1002, the job is not valid for the
backend; 1003, it failed to transpile) says the job itself is at fault, and so does a failure
without a code. The client puts the code in the job's error message ("Error code 1011; ...").

Local jobs: a worker lost mid-simulation is transient (the circuits are fine; the process or
machine running them died): when its step is lost ``reconciler.MAX_RESENDS`` times and the job
would fail, it gets a new attempt instead. A job whose simulation raised, or whose circuits
failed to transpile, failed for good.

What starts an attempt is its *kind*: ``repost`` (the service dropped the job with its batch,
which never counts against ``max_retries``), ``retry`` (this table) or ``rerun``
(``job_set.rerun_failed()``, which gives the jobs their retries afresh).
"""

from __future__ import annotations

import re
from typing import Any

#: IBM reason codes whose registry entry says to retry the action.
RETRY_CODES: dict[int, str] = {
    1006: "Error during call to converter microservice",
    1008: "Error during the validation process of a job",
    1010: "Error returned at backend level",
    1011: "Error publishing job at the backend queue",
}
#: Examples of codes that are not transient (the job is at fault); any code not above is not.
PERMANENT_EXAMPLES: dict[int, str] = {
    1002: "Error in the validation process of the job",
    1003: "Error in transpilation process",
}
#: The most ``max_retries`` a set may ask for.
MAX_RETRIES = 10

REPOST, RETRY, RERUN = "repost", "retry", "rerun"

_CODE_RE = re.compile(r"[Ee]rror code:?\s*(\d{4})\b")
#: How the reconciler says a job's step was lost (``lost_step``).
_LOST_RE = re.compile(r"its (transpile|submit|poll) step was lost \d+ times")


def lost_step(step: str, times: int) -> str:
    """The error of a job given up after its ``step`` was lost ``times`` times (worker or broker
    failures), in the words ``transient`` recognises."""
    return f"its {step} step was lost {times} times (worker or broker failures)"


def reason_code(error: str | None) -> int | None:
    """The service's reason code in a failed job's error message, if any."""
    match = _CODE_RE.search(error or "")
    return int(match.group(1)) if match else None


def transient(error: str | None, local: bool) -> bool:
    """Whether a job that failed with ``error`` may succeed if simply run again."""
    if local:
        return bool(_LOST_RE.search(error or ""))
    return reason_code(error) in RETRY_CODES


def retries_used(history: list[dict[str, Any]]) -> int:
    """Automatic retries since the job's last re-run by the user."""
    used = 0
    for past in history:
        kind = past.get("kind")
        used = 0 if kind == RERUN else used + (kind == RETRY)
    return used


def may_retry(max_retries: int, history: list[dict[str, Any]], error: str | None, local: bool) -> bool:
    """Whether a job that just failed with ``error`` gets another attempt."""
    return max_retries > retries_used(history) and transient(error, local)
