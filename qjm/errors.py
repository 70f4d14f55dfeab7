"""One hierarchy for every error qjm raises, so callers can catch ``QJMError`` alone."""

from __future__ import annotations


class QJMError(Exception):
    """Base class of every qjm error."""


class InvalidInputError(QJMError, ValueError):
    """The arguments to ``run()`` cannot be executed; the message says what to change."""


class UnknownBackendError(InvalidInputError):
    """The backend name is neither a local simulator nor reachable on IBM Quantum."""


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
