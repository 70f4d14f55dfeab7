"""One hierarchy for every error qjm raises, so callers can catch ``QJMError`` alone."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QJMError(Exception):
    """Base class of every qjm error."""


class InvalidInputError(QJMError, ValueError):
    """The arguments to ``run()`` cannot be executed; the message says what to change."""


class UnknownBackendError(InvalidInputError):
    """The backend name is neither a local simulator nor reachable on IBM Quantum."""

    @classmethod
    def unknown(cls, name: str, usable: Iterable[str], why: str = "") -> UnknownBackendError:
        """The one message for a name no backend has, wherever a name is resolved: it is unknown
        (and ``why``, if the caller knows more), the closest names, then every name qjm can use."""
        names = sorted(set(usable))
        lowered = {n.lower(): n for n in names}
        asked = name.strip().lower()
        close = [lowered[n] for n in difflib.get_close_matches(asked, list(lowered), n=3, cutoff=0.7)]
        close += [n for n in names if len(asked) >= 3 and asked in n.lower() and n not in close][:3 - len(close)]
        message = f"Unknown backend {name!r}" + (f": {why}" if why else "") + "."
        if close:
            message += f" Did you mean {' or '.join(map(repr, close))}?"
        listed = close + [n for n in names if n not in close]
        return cls(message + f" Backends qjm can use here ({len(listed)}): {', '.join(listed) or 'none'}.")


class SettingsError(QJMError, ValueError):
    """A setting cannot be used as given; the message names the variable and what to change."""


class CircuitFileError(InvalidInputError):
    """A file given to ``qjm run`` is missing, unreadable, or not QPY/OpenQASM."""


class StoreUnavailableError(QJMError, ConnectionError):
    """Redis (``QJM_REDIS_URL``) does not answer."""


class JobSetNotFoundError(QJMError, KeyError):
    """No job set with that id exists (or it has expired)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "job set not found"


class JobSetTimeoutError(QJMError, TimeoutError):
    """A wait ran out before the job set reached a final state."""


class JobSetFailedError(QJMError):
    """Some jobs of the set failed or were cancelled and a full result was asked for."""


class ResultNotAvailableError(JobSetFailedError):
    """An experiment has no result: its job failed or was cancelled (the message names the job and
    why), or the result asked for is one qjm does not make (qjm runs measured circuits)."""


class ExperimentNotFoundError(QJMError, KeyError):
    """An experiment index, name or circuit does not identify one experiment of the set."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "experiment not found"


class ExecutorError(QJMError):
    """A backend refused or failed a job; recorded on the job as its error."""


class BatchClosedError(ExecutorError):
    """The set's batch on the service is closed (e.g. it reached its maximum lifetime): the job
    goes to a new batch."""


class RetryLater(QJMError):
    """A transient refusal (throttling, pending-job limit): try the step again after ``delay``."""

    def __init__(self, message: str, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class JobSetRunningError(QJMError):
    """The call needs a final job set (e.g. ``rerun_failed()``), and this one is still running."""
