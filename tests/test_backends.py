"""Backends as users choose them: the listing, least busy, and one set fanned out over several
backends (local ones here; the emulator's devices in test_ibm_backends)."""

from __future__ import annotations

import pytest

from qjm import BackendInfo, InvalidInputError, JobStatus, UnknownBackendError

from .circuits import basis_state, expected

SHOTS = 64


def test_local_backends_are_listed_and_filtered(jm):
    names = [b.name for b in jm.backends()]
    assert "aer_simulator" in names and "fake_manila" in names
    manila = jm.backends(name="fake_manila")[0]
    assert isinstance(manila, BackendInfo)
    assert (manila.num_qubits, manila.local, manila.operational, manila.pending_jobs) == (5, True, True, 0)
    wide = jm.backends(min_num_qubits=100, filters=lambda b: b.name.startswith("fake_"))
    assert wide and all(b.num_qubits >= 100 for b in wide)
    assert jm.least_busy(min_num_qubits=5, simulator=True).operational
    with pytest.raises(UnknownBackendError, match="No operational backend matches"):
        jm.least_busy(min_num_qubits=10_000, simulator=True)


def test_a_set_fans_out_over_local_backends_and_results_land_at_their_index(jm):
    circuits = [basis_state(k % 8, name=f"f{k}") for k in range(12)]
    js = jm.run(circuits, backend=["aer_simulator", "fake_manila"], max_experiments_per_job=2, shots=SHOTS)
    results = js.results(timeout=180)
    assert js.statuses() == [JobStatus.DONE] * 6
    placed = [j.backend_name() for j in js.jobs()]
    assert set(placed) == {"aer_simulator", "fake_manila"}, placed
    assert js.backend_names() == ["aer_simulator", "fake_manila"]
    for k in range(12):
        counts = results.get_counts(k)
        if placed[k // 2] == "aer_simulator":
            assert counts == {expected(k % 8): SHOTS}, k
        else:  # fake_manila's noise: the right answer still dominates
            assert max(counts, key=counts.get) == expected(k % 8), (k, counts)
    report = js.report()
    assert "jobs per backend: aer_simulator 3, fake_manila 3" in report
    assert [s.job_set_id() for s in jm.job_sets(backend="fake_manila")][:1] == [js.job_set_id()]


def test_a_bad_backend_list_is_refused_before_anything_is_written(jm):
    before = len(jm.job_sets())
    circuits = [basis_state(1)]
    with pytest.raises(InvalidInputError, match="more than once"):
        jm.run(circuits, backend=["fake_manila", "fake_manila"])
    with pytest.raises(InvalidInputError, match="mixes local"):
        jm.run(circuits, backend=["fake_manila", "ibm_nowhere"])
    with pytest.raises(UnknownBackendError):
        jm.run(circuits, backend=[])
    assert len(jm.job_sets()) == before


def test_a_fanned_out_set_stays_listed_under_what_it_used_after_a_stale_write_or_a_crash(jm):
    """A set is listed under a backend when a job is first placed there; a record read before
    that placement (a rename racing it) does not take the listing away, and the reconciler's
    repair lists a set whose listing a crash cut short."""
    from dataclasses import replace

    from qjm import JobSetStatus

    js = jm.run([basis_state(k) for k in range(8)], backend=["aer_simulator", "fake_manila"],
                max_experiments_per_job=1, shots=SHOTS)
    js.results(timeout=180)
    sid, store = js.job_set_id(), jm.store
    rec = store.job_set(sid)
    assert rec.used == js.backend_names() == ["aer_simulator", "fake_manila"]
    found = {b: [s.job_set_id() for s in jm.job_sets(backend=b)] for b in rec.used}
    assert all(sid in ids for ids in found.values()), found

    store.index.update(replace(rec, used=[]))  # read before any placement
    assert all(sid in [s.job_set_id() for s in jm.job_sets(backend=b)] for b in rec.used)

    # A crash after the placement was noted and before the listing: listed as running, under no backend.
    store.index.remove(sid)
    store.index.add(replace(rec, used=[], status=JobSetStatus.RUNNING), expires=rec.created + 3600)
    assert sid not in [s.job_set_id() for s in jm.job_sets(backend="fake_manila")]
    assert store.index.repair([]) >= 1
    assert all(sid in [s.job_set_id() for s in jm.job_sets(backend=b)] for b in rec.used)
    assert sid in [s.job_set_id() for s in jm.job_sets(status="DONE")]
