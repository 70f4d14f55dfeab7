"""The pending-job slots that throttle remote backends, on a real Redis."""

from __future__ import annotations

import time

import pytest

from qjm.config import Settings
from qjm.store import Store

from .procs import RedisServer


@pytest.fixture(scope="module")
def store():
    server = RedisServer().start()
    yield Store(cfg=Settings(redis_url=server.url))
    server.stop()


def test_limit_holds_and_holders_keep_their_slot(store):
    assert store.slots.acquire("b1", "a:0", 2, lease=60) and store.slots.acquire("b1", "a:1", 2, lease=60)
    assert not store.slots.acquire("b1", "a:2", 2, lease=60)
    assert store.slots.acquire("b1", "a:1", 2, lease=60)  # a redelivery of a holder keeps its slot
    assert store.slots.in_use("b1") == 2


def test_release_happens_exactly_once_and_renewal_never_resurrects(store):
    assert store.slots.acquire("b2", "s:0", 1, lease=60)
    assert store.slots.release("b2", "s:0") is True
    assert store.slots.release("b2", "s:0") is False
    assert store.slots.renew("b2", "s:0", lease=60) is False
    assert store.slots.in_use("b2") == 0


def test_slot_of_a_dead_holder_is_reclaimed_when_its_lease_runs_out(store):
    assert store.slots.acquire("b3", "dead:0", 1, lease=0.3)
    assert not store.slots.acquire("b3", "live:0", 1, lease=60)
    time.sleep(0.4)  # the holder stopped renewing
    assert store.slots.acquire("b3", "live:0", 1, lease=60)
    assert store.slots.in_use("b3") == 1


def test_waiting_jobs_are_handed_slots_oldest_first(store):
    store.slots.wait("b4", "w:1", since=1.0)
    store.slots.wait("b4", "w:0", since=2.0)
    store.slots.wait("b4", "w:1", since=3.0)  # waiting again keeps its place
    assert store.slots.next_waiting("b4") == "w:1"
    assert store.slots.next_waiting("b4") == "w:0"
    assert store.slots.next_waiting("b4") is None
