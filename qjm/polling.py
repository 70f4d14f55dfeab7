"""When to ask the service about a remote job next.

Two regimes:

* No track record for the backend yet: poll at a tenth of the job's age (between
  ``QJM_MIN_POLL_INTERVAL`` and ``Settings.poll_cap``), so an end is noticed within about 10 % of
  the job's time and a job that waits for hours costs one request a minute.
* A track record (recent jobs on the backend took ``mean`` seconds, give or take ``dev``): jobs of
  one job set on one backend tend to take alike, so skip ahead to just before the expected end
  and poll finely around it. The end is noticed within a small fraction of the job's time, with
  fewer requests than the age-based schedule; a job that runs late falls back to it.

The estimate is kept per backend in Redis (``Store.record_duration``) from the age at which
finished jobs were last seen still pending, so every worker plans with what all of them saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings

#: The shortest pause, and only near an expected end: 20 ms suits the emulator's 1 s jobs, while
#: a 10 s job gets 0.2 s and an IBM job of minutes gets seconds (see ``Estimate.fine``).
FINE_FLOOR = 0.02


@dataclass(frozen=True)
class Estimate:
    """How long jobs on one backend have recently taken, from submit to their end."""

    mean: float
    dev: float

    @property
    def fine(self) -> float:
        """The pause between polls near the expected end: tighter for steadier backends."""
        return max(FINE_FLOOR, 0.02 * self.mean, 0.25 * self.dev)

    @property
    def window(self) -> tuple[float, float]:
        """Ages between which the end is expected, widened by the fine pause on each side."""
        return max(0.0, self.mean - 2 * self.dev - self.fine), self.mean + 2 * self.dev + 2 * self.fine


def age_based(age: float, cfg: Settings) -> float:
    return min(cfg.poll_cap, max(cfg.min_poll_interval, 0.1 * age))


def first_poll_age(est: Estimate | None, cfg: Settings) -> float:
    """Age before which asking is pointless: the job was just posted, or is not expected to end yet."""
    if est is None:
        return cfg.min_poll_interval
    return min(cfg.poll_cap, max(cfg.min_poll_interval, est.window[0]))


def next_poll_in(age: float, est: Estimate | None, cfg: Settings) -> float:
    """Seconds until the next status check of a job now ``age`` seconds old and still pending."""
    base = age_based(age, cfg)
    if est is None:
        return base
    start, end = est.window
    if age < start:
        return min(cfg.poll_cap, start - age)
    if age <= end:
        return min(base, est.fine)
    return base


def slot_wait_retry_in(waited: float, est: Estimate | None, cfg: Settings) -> float:
    """How soon a job waiting for a pending-job slot checks back.

    A freed slot is handed to the longest-waiting job at once, by whoever freed it; the
    waiting task only has to come back to go on to polling, and that is due no sooner than the
    first poll of its job. So with a track record it checks back at half that time.
    """
    if est is None:
        return age_based(waited, cfg)
    return max(cfg.min_poll_interval, first_poll_age(est, cfg) / 2)
