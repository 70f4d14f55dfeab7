"""The poll schedule for remote jobs, and the per-backend duration estimate it plans with."""

from __future__ import annotations

import pytest

from qjm.config import Settings
from qjm.engine.polling import (
    LEAD,
    Estimate,
    countdown,
    end_sample,
    first_poll_age,
    next_poll_in,
    queued,
    slot_wait_retry_in,
    sooner,
    wait_inline,
)
from qjm.store import Store

from .procs import RedisServer

CFG = Settings(redis_url="redis://unused", max_poll_interval=60, min_poll_interval=0.1)


def poll_ages(job_seconds: float, est: Estimate | None, start: float = 0.0) -> list[float]:
    """Ages at which a job that ends at ``job_seconds`` is asked about, the last one seeing it end."""
    ages, age = [], max(start, first_poll_age(est, CFG))
    while True:
        ages.append(age)
        if age >= job_seconds:
            return ages
        age += next_poll_in(age, est, CFG)


@pytest.fixture(scope="module")
def store():
    server = RedisServer().start()
    yield Store(cfg=Settings(redis_url=server.url))
    server.stop()


def test_without_a_track_record_polls_follow_a_tenth_of_the_age():
    ages = poll_ages(30.0, None)
    assert ages[0] == pytest.approx(0.1)
    gaps = [b - a for a, b in zip(ages, ages[1:], strict=False)]
    assert all(gap == pytest.approx(max(0.1, 0.1 * a)) for a, gap in zip(ages, gaps, strict=False))
    assert ages[-1] - 30.0 <= 0.1 * 30.0 + 1e-9  # noticed within 10 % of the job's time


def test_with_a_track_record_the_end_is_noticed_finely_with_few_requests():
    est = Estimate(mean=1.0, dev=0.01)
    ages = poll_ages(1.0, est)
    assert ages[0] >= 0.9, "nothing is asked long before the expected end"
    assert ages[-1] - 1.0 <= est.fine + 1e-9
    assert len(ages) < len(poll_ages(1.0, None)), "fewer requests than without an estimate"


def test_a_job_near_the_head_of_a_device_queue_is_noticed_at_its_own_end():
    """Jobs of one backend took 3 s from post to end on average (two queued ahead of each); a job
    posted with nothing ahead ends after 1 s: its own estimate (one job at the device's pace)
    notices it within a fine pause, where the backend's would ask first at about 3 s."""
    backend, pace = Estimate(mean=3.0, dev=0.2), Estimate(mean=1.0, dev=0.05)
    est = sooner(queued(pace, 0), backend)
    assert est == Estimate(1.0, 0.05)
    ages = poll_ages(1.0, est)
    assert ages[-1] - 1.0 <= est.fine + 1e-9 and len(ages) <= 3
    assert poll_ages(1.0, backend)[0] > 2.5
    # A job's own estimate never puts its first poll off: a listing seconds old may overstate its queue.
    assert sooner(queued(pace, 20), backend) == backend
    assert queued(None, 3) is None and queued(pace, None) is None and sooner(None, None) is None


def test_a_job_running_late_falls_back_to_the_age_based_schedule():
    est = Estimate(mean=1.0, dev=0.01)
    ages = poll_ages(20.0, est)
    late = [(a, b - a) for a, b in zip(ages, ages[1:], strict=False) if a > est.window[1]]
    assert late and all(gap == pytest.approx(max(0.1, 0.1 * a)) for a, gap in late)
    assert ages[-1] - 20.0 <= 2.0 + 1e-9


def test_long_jobs_are_never_left_unasked_beyond_the_cap():
    est = Estimate(mean=7200.0, dev=600.0)  # two hours in a device queue
    assert first_poll_age(est, CFG) == CFG.poll_cap
    assert all(next_poll_in(age, est, CFG) <= CFG.poll_cap for age in (0, 30, 3000, 7000, 7200, 9000, 90000))
    assert est.fine >= 100, "near the end of a two-hour job, polls stay minutes apart"


def test_a_chunk_waiting_for_a_slot_comes_back_before_its_handed_off_job_is_due():
    est = Estimate(mean=1.0, dev=0.01)
    for waited in (0.0, 1.0, 10.0, 1000.0):
        assert slot_wait_retry_in(waited, est, CFG) < first_poll_age(est, CFG)
    assert slot_wait_retry_in(5.0, None, CFG) == pytest.approx(0.5)


def test_a_chunk_deep_in_the_slot_queue_comes_back_once_per_round_not_every_half_second():
    est = Estimate(mean=1.0, dev=0.01)
    near = slot_wait_retry_in(0.0, est, CFG, ahead=2, slots=3)
    deep = [slot_wait_retry_in(0.0, est, CFG, ahead=k, slots=3) for k in (3, 12, 27)]
    assert near < first_poll_age(est, CFG), "next in line: back before its job, handed off, is due a poll"
    assert deep[0] > near and deep == sorted(deep)
    # 27 jobs ahead on 3 slots: it is posted 9 rounds of ~1 s from now at the soonest, and back
    # before that post's first poll is due.
    assert 8 * est.mean < deep[-1] < 9 * est.mean + first_poll_age(est, CFG)
    assert slot_wait_retry_in(0.0, Estimate(mean=7200.0, dev=60.0), CFG, ahead=30, slots=3) == CFG.poll_cap


def test_an_estimate_that_aims_too_late_comes_down_and_late_polls_leave_it_alone():
    est = Estimate(mean=2.0, dev=0.01)
    # Seen done at a first poll made on time: counted well below the planned age.
    assert end_sample(None, est.first, est) < est.first - est.fine
    # A first poll that landed late (a busy worker) says nothing of when the job ended.
    assert end_sample(None, est.first + 0.3, est) is None
    # Seen pending first: the last pending age, a lower bound of its end.
    assert end_sample(1.93, 1.95, est) == 1.93
    assert end_sample(None, 3.0, None) == 3.0


def test_only_short_pauses_are_waited_in_the_task_and_the_skip_ahead_lands_early():
    assert wait_inline(0.02) and not wait_inline(5.0)
    assert countdown(0.9) == pytest.approx(0.9 - LEAD) and countdown(0.05) == 0.05
    assert wait_inline(0.9 - countdown(0.9)), "what the early return leaves is waited in the task"


def test_estimate_follows_what_jobs_took(store):
    assert store.durations.estimate("dev1") is None
    for _ in range(10):
        store.durations.record("dev1", 1.0)
    est = store.durations.estimate("dev1")
    assert est.mean == pytest.approx(1.0) and est.dev < 0.03
    store.durations.record("dev1", 3.0)  # one outlier moves it, but not all the way
    moved = store.durations.estimate("dev1")
    assert 1.0 < moved.mean < 2.0 and moved.dev > est.dev
    assert store.durations.estimate("dev2") is None, "estimates are per backend"
