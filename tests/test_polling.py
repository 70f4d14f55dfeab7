"""The poll schedule for remote jobs, and the per-backend duration estimate it plans with."""

from __future__ import annotations

import pytest

from qjm.backends import Catalog, Placement
from qjm.config import Settings
from qjm.engine.polling import (
    LEAD,
    Estimate,
    countdown,
    end_sample,
    first_poll_age,
    next_poll_in,
    queued,
    serial_end,
    slot_wait_retry_in,
    sooner,
    still_queued,
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


def polls_of_a_queued_job(start: float, end: float, est: Estimate, pace: Estimate, own: Estimate | None) -> list[float]:
    """Ages at which a job the service shows queued until ``start`` and running until ``end`` is
    asked about, following what each poll saw, the last one seeing it end."""
    ages, age = [], first_poll_age(est, CFG)
    while True:
        ages.append(age)
        if age >= end:
            return ages
        age += next_poll_in(age, est, CFG, still_queued(age, pace, own) if age < start else None)


def looks_on_a_serial_device(start: float, end: float, pace: Estimate, ahead: int, last_end: tuple[float, float] | None,
                             backend: Estimate) -> list[float]:
    """Ages at which a job posted at 0 that runs from ``start`` to ``end`` is asked about when
    polls follow ``serial_end`` with what each look saw (the last look seeing it end)."""
    queued_at = running_at = None
    lo, hi = last_end or (None, None)
    ages, age = [], serial_end(pace, 0.0, ahead, None, None, lo, hi).first
    while True:
        ages.append(age)
        if age >= end:
            return ages
        if age < start:
            queued_at = age
        elif running_at is None:
            running_at = age
        plan = serial_end(pace, 0.0, ahead, queued_at, running_at, lo, hi)
        delay = plan.next_poll_in(age, CFG)
        age += next_poll_in(age, backend, CFG) if delay is None else delay


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


def test_a_job_seen_queued_is_not_asked_again_before_it_can_have_run():
    """Jobs of one backend ended 2 s to 3 s after their post, a job posted with 5 of other
    users' jobs ahead at 1 s each runs from 5 s to 6 s. Polled by the backend's estimate it is
    asked a dozen times while still queued; seen queued, it is next asked when its own estimate
    says, and seen ending within a tenth of its age, in a few requests."""
    backend, pace = Estimate(mean=2.7, dev=0.4), Estimate(mean=1.0, dev=0.05)
    own = queued(pace, 5)
    blind = poll_ages(6.0, backend)
    ages = polls_of_a_queued_job(5.0, 6.0, sooner(own, backend), pace, own)
    assert len(ages) <= 4 < 10 <= len(blind), (ages, blind)
    assert ages[-1] - 6.0 <= 0.1 * 6.0 + 1e-9
    assert sum(a < 5.0 for a in ages) == 1, "one early look (the backend's), then where its own estimate aims"
    # Without its queue at post: one job's time at the device's pace between looks, no less.
    assert still_queued(3.0, pace, None) == pytest.approx(3.95)
    assert next_poll_in(3.0, backend, CFG, still_queued(3.0, pace, None)) == pytest.approx(0.95)
    assert still_queued(3.0, None, own) is None


def test_on_a_device_that_runs_jobs_in_turn_a_job_is_asked_about_one_run_after_its_start():
    """Jobs of 1 s, run one at a time; a job posted behind 2 of qjm's ends at 3 s. The backend's
    estimate (its jobs ended 2.7 s after post, give or take 0.3 s) has polls walk up to the end
    finely; the device's pace puts the first look just before it and the next at it."""
    pace, backend = Estimate(mean=1.0, dev=0.03), Estimate(mean=2.7, dev=0.3)
    blind = poll_ages(3.0, backend)
    ages = looks_on_a_serial_device(2.0, 3.0, pace, 2, None, backend)
    assert len(ages) <= 2 < 4 <= len(blind), (ages, blind)
    assert ages[-1] - 3.0 <= 0.06, "noticed within a tenth of a run"
    # qjm's job before it was seen ending between 1.95 s and 2.0 s: it ends one run after that.
    assert looks_on_a_serial_device(2.0, 3.0, pace, 0, (1.95, 2.0), backend)[0] >= 2.9
    # Two of other users' jobs came in ahead of it unseen (it starts at 4 s): the looks that find
    # it queued move its plan on, and the end is still noticed within a tenth of its age.
    late = looks_on_a_serial_device(4.0, 5.0, pace, 2, None, backend)
    assert len(late) <= 6 and late[-1] - 5.0 <= 0.5, late


def test_a_job_seen_running_ends_within_a_run_of_that_look_not_when_its_queue_said():
    """Its queue at post said it starts at 5 s; a look at 2.5 s already found it running (it
    started at 2.2 s): it is noticed at its end at 3.2 s, not 6 s."""
    pace, backend = Estimate(mean=1.0, dev=0.03), Estimate(mean=6.0, dev=0.1)
    plan = serial_end(pace, 0.0, 5, 1.8, 2.5, None, None)
    assert plan.lo == pytest.approx(1.8 + 0.95) and plan.target == pytest.approx(3.5)
    ages = [2.5]
    while ages[-1] < 3.2:
        ages.append(ages[-1] + (plan.next_poll_in(ages[-1], CFG) or next_poll_in(ages[-1], backend, CFG)))
    assert len(ages) <= 4 and ages[-1] <= 3.2 + 0.35, ages


def test_a_device_runs_in_turn_once_jobs_were_seen_running_one_at_a_time(store):
    """What polls saw is kept per device: five jobs seen running and ended one after another
    make it serial; two seen running at once (a look found one running, then another, then the
    first again) make it not; the latest end is kept, earlier ones noticed later are not."""
    runs = store.durations.runs
    for k in range(5):
        assert not runs.read("dev_turn", f"s:{k}").serial
        runs.seen("dev_turn", f"s:{k}", False, 10.0 * k)
        runs.seen("dev_turn", f"s:{k}", True, 10.0 * k + 1)
        assert runs.read("dev_turn", f"s:{k}").running_at == 10.0 * k + 1
        runs.ended("dev_turn", f"s:{k}", 10.0 * k + 2, 10.0 * k + 3, 9.0)
    seen = runs.read("dev_turn", "s:9")
    assert seen.serial and (seen.end_lo, seen.end_hi) == (42.0, 43.0) and seen.queued_at is None
    runs.ended("dev_turn", "s:3", 30.0, 31.0, 9.0)
    assert runs.read("dev_turn", "s:9").end_lo == 42.0
    runs.seen("dev_turn", "s:5", True, 50.0)
    runs.seen("dev_turn", "s:6", True, 50.1)
    runs.seen("dev_turn", "s:5", True, 50.2)
    assert not runs.read("dev_turn", "s:9").serial
    # Two ends a tenth of a job's time apart: not in turn either.
    for k in range(5):
        runs.seen("dev_both", f"s:{k}", True, 10.0 * k + 1)
        runs.ended("dev_both", f"s:{k}", 10.0 * k + 2, 10.0 * k + 3, 9.0)
    assert runs.read("dev_both", "s:9").serial
    runs.ended("dev_both", "s:5", 42.5, 43.5, 9.0)
    assert not runs.read("dev_both", "s:9").serial and runs.parallel("dev_both")


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


def test_a_post_counts_its_own_jobs_fresh_and_other_users_from_a_listing_less_what_ran_since(store):
    """The listing (cached for seconds) showed 5 jobs on the device while qjm had 2 pending there:
    3 are other users'. Posted at once, a job has those 3 and qjm's other pending jobs ahead of
    it; 2 s later at a pace of 1 s a job, 2 of the others have run. What the listing showed of
    qjm's own jobs, ended since, is never counted."""
    clock = [100.0]
    listed = [{"name": "ibm_dev", "num_qubits": 5, "operational": True, "status_message": "active", "pending_jobs": 5}]
    cfg = Settings(redis_url=store.cfg.redis_url, backends_cache_seconds=5.0)
    catalog = Catalog(store, cfg, devices=lambda: listed, clock=lambda: clock[0])
    placement = Placement(store, cfg, catalog)
    for ref in ("s:0", "s:1"):
        assert store.slots.acquire("ibm_dev", ref, 3, 60)
    assert catalog.others_queued("ibm_dev") == (3, 0.0)
    assert store.slots.acquire("ibm_dev", "s:2", 3, 60)  # the job being posted holds its slot
    assert placement.queue_ahead("ibm_dev") == 2 + 3
    for _ in range(3):
        store.durations.record_pace("ibm_dev", 1.0)
    clock[0] += 2.0
    store.slots.release("ibm_dev", "s:0")
    store.slots.release("ibm_dev", "s:1")
    assert placement.queue_ahead("ibm_dev") == 0 + 1, "2 of the 3 others ran; qjm's ended jobs are gone"
    assert catalog.others_queued("ibm_missing") is None


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
