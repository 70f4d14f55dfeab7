"""How the emulated service falls short of a perfect one: slowness, limits, injected failures.

Every knob lives in one frozen ``Faults``, built once (from the command line with
``add_arguments``/``from_args``, or from keyword arguments) and handed to the service state, so a
new knob is one field and one flag here instead of a change to every constructor on the way down.
``to_argv`` turns it back into flags for starting ``python -m qjm.emulator`` as a process.
"""

from __future__ import annotations

import argparse
import random
import threading
from dataclasses import dataclass, fields

#: IBM's job failure codes the emulator knows a message for (from IBM's error code registry):
#: for 1006/1008/1010/1011 the registry says "retry the action" (transient); 1002/1003 say the job
#: itself is at fault (permanent). Any other positive code is accepted with a generic message.
CODE_MESSAGES: dict[int, str] = {
    1002: "Error in the validation process of the job.",
    1003: "Error in transpilation process.",
    1006: "Error during call to converter microservice.",
    1008: "Error during the validation process of a job.",
    1010: "Error returned at backend level.",
    1011: "Error publishing job at the backend queue.",
}


@dataclass(frozen=True)
class Faults:
    """The emulator's knobs; the defaults are a well-behaved service with 5 s jobs.

    ``job_seconds``: time from a post to its result (queued the first half, running the second).
    ``pending_limit``: refuse posts beyond N queued/running jobs per instance (code 3458).
    ``batch_ttl``: a batch's maximum lifetime in seconds from its first running job (None: only
    the client's ``max_ttl``, if any); when reached, running jobs finish and queued ones fail.
    ``fail_every``: every K-th posted job fails. ``fail_codes``: the ``reasonCode`` those failures
    carry, taken in turn (empty: no code, as before codes existed).
    ``throttle`` / ``server_errors``: fraction of API requests answered 429 / 503 before they are
    acted on; ``retry_after`` is the 429's ``Retry-After`` (GET only, as the service does).
    ``seed``: makes the dice of ``throttle`` and ``server_errors`` (and of ``estimate_error``) repeatable.
    ``serial``: each device runs one job at a time, oldest first, ``job_seconds`` each (``queues``).
    ``background``: (device, N) pairs: N jobs of other users queued on that device at start.
    ``offline``: devices in maintenance at start (``POST /emulator/backends/<name>`` changes it).
    ``usage_limit``: the instance's allocation in quantum seconds (None: unlimited; see ``usage``).
    ``estimate_error``: the job record's ``estimated_running_time_seconds`` is the charge times
    ``1 + u``, ``u`` uniform in ``[-estimate_error, estimate_error]`` (seeded by ``seed``).
    """

    job_seconds: float = 5.0
    pending_limit: int | None = None
    batch_ttl: float | None = None
    fail_every: int = 0
    fail_codes: tuple[int, ...] = ()
    throttle: float = 0.0
    retry_after: int = 1
    server_errors: float = 0.0
    seed: int | None = None
    serial: bool = False
    background: tuple[tuple[str, int], ...] = ()
    offline: tuple[str, ...] = ()
    usage_limit: float | None = None
    estimate_error: float = 0.0

    def __post_init__(self) -> None:
        # Accept any iterable (a list from kwargs or argparse) but store tuples.
        object.__setattr__(self, "fail_codes", tuple(int(c) for c in self.fail_codes or ()))
        object.__setattr__(self, "background", tuple((str(n), int(k)) for n, k in self.background or ()))
        object.__setattr__(self, "offline", tuple(str(n) for n in self.offline or ()))
        problems = []
        if self.job_seconds < 0:
            problems.append(f"job_seconds must be >= 0, not {self.job_seconds}")
        if self.pending_limit is not None and self.pending_limit < 1:
            problems.append(f"pending_limit must be >= 1 or None, not {self.pending_limit}")
        if self.batch_ttl is not None and self.batch_ttl <= 0:
            problems.append(f"batch_ttl must be > 0 or None, not {self.batch_ttl}")
        if self.fail_every < 0:
            problems.append(f"fail_every must be >= 0, not {self.fail_every}")
        if self.fail_codes and not self.fail_every:
            problems.append("fail_codes need fail_every (which jobs fail)")
        if any(code <= 0 for code in self.fail_codes):
            problems.append(f"fail codes must be positive, not {self.fail_codes}")
        for name in ("throttle", "server_errors"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be a fraction in 0..1, not {getattr(self, name)}")
        if self.retry_after < 0:
            problems.append(f"retry_after must be >= 0, not {self.retry_after}")
        if any(k < 0 for _, k in self.background):
            problems.append(f"background job counts must be >= 0, not {self.background}")
        if self.usage_limit is not None and self.usage_limit < 0:
            problems.append(f"usage_limit must be >= 0 or None, not {self.usage_limit}")
        if not 0.0 <= self.estimate_error < 1.0:
            problems.append(f"estimate_error must be a fraction in 0..1 (1 excluded), not {self.estimate_error}")
        if problems:
            raise ValueError("; ".join(problems))

    def unknown_devices(self, names: list[str]) -> list[str]:
        """Devices named by ``background`` or ``offline`` that the catalogue does not have."""
        known = set(names)
        return sorted(({n for n, _ in self.background} | set(self.offline)) - known)

    def fails(self, seq: int) -> bool:
        """Whether the ``seq``-th posted job (1-based) is one that ``fail_every`` makes fail."""
        return bool(self.fail_every) and seq % self.fail_every == 0

    def failure(self, seq: int) -> tuple[str, int | None]:
        """Reason and reason code of the ``seq``-th job's injected failure; codes go in turn."""
        origin = f"emulated failure: job #{seq} is a multiple of fail_every={self.fail_every} (qjm emulator fault injection)"
        if not self.fail_codes:
            return origin[0].upper() + origin[1:], None
        code = self.fail_codes[(seq // self.fail_every - 1) % len(self.fail_codes)]
        message = CODE_MESSAGES.get(code, f"Error {code}.")
        return f"{message} ({origin})", code

    def to_argv(self) -> list[str]:
        """The command-line flags that rebuild these faults in ``python -m qjm.emulator``."""
        argv: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.name == "fail_codes":
                for code in value:
                    argv += ["--fail-code", str(code)]
            elif f.name == "background":
                for name, count in value:
                    argv += ["--background", f"{name}={count}"]
            elif f.name == "offline":
                for name in value:
                    argv += ["--offline", name]
            elif f.name == "serial":
                argv += ["--serial"] if value else []
            elif value is not None and value != f.default:
                argv += [flag, str(value)]
        return argv


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in 0..1")
    return value


def _background(text: str) -> tuple[str, int]:
    name, sep, count = text.partition("=")
    if not sep or not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=N (a device and a job count, e.g. ibm_manila=3)")
    return name, int(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fault flags, one per ``Faults`` field (``--fail-code`` may be repeated)."""
    d = Faults()
    parser.add_argument("--job-seconds", type=float, default=d.job_seconds, help="time from a post to its result")
    parser.add_argument("--pending-limit", type=int, default=None,
                        help="refuse submits beyond N queued/running jobs (code 3458)")
    parser.add_argument("--batch-ttl", type=float, default=None, metavar="SECONDS",
                        help="a batch's maximum lifetime from its first running job; then its queued jobs fail "
                             "(default: the client's max_ttl, else none)")
    parser.add_argument("--fail-every", type=int, default=0, metavar="K", help="make every K-th job fail")
    parser.add_argument("--fail-code", type=int, action="append", dest="fail_codes", default=[], metavar="CODE",
                        help="reasonCode of those failures, e.g. 1011 (transient) or 1002 (permanent); "
                             "repeat to alternate codes")
    parser.add_argument("--throttle", type=_fraction, default=0.0, help="answer this fraction (0..1) of API requests with 429")
    parser.add_argument("--retry-after", type=int, default=d.retry_after, metavar="SECONDS",
                        help="Retry-After of a throttled GET")
    parser.add_argument("--server-errors", type=_fraction, default=0.0,
                        help="answer this fraction (0..1) of API requests with 503")
    parser.add_argument("--seed", type=int, default=None, help="seed the fault injection, for repeatable runs")
    parser.add_argument("--serial", action="store_true",
                        help="each device runs one job at a time, first in first out, --job-seconds each")
    parser.add_argument("--background", type=_background, action="append", default=[], metavar="NAME=N",
                        help="N jobs of other users queued on device NAME at start (repeatable)")
    parser.add_argument("--offline", action="append", default=[], metavar="NAME",
                        help="device NAME starts in maintenance: its jobs wait until it is online (repeatable)")
    parser.add_argument("--usage-limit", type=float, default=None, metavar="SECONDS",
                        help="the instance's allocation of quantum seconds; while consumed, queued jobs wait")
    parser.add_argument("--estimate-error", type=float, default=0.0, metavar="F",
                        help="estimated_running_time_seconds is the charge times 1+u, u uniform in [-F, F]")


def from_args(args: argparse.Namespace) -> Faults:
    """``Faults`` from a namespace parsed with ``add_arguments``."""
    return Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})


class Dice:
    """The seeded random draws of ``throttle`` and ``server_errors``, shared by request threads."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self, probability: float) -> bool:
        if probability <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < probability

