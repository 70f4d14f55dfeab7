"""Every step run twice (a redelivery) leaves the same state: called directly against real Redis."""

from __future__ import annotations

from qjm import JobManager, JobSetStatus, JobStatus
from qjm.engine.pipeline import Pipeline
from qjm.store import keys

from .circuits import basis_state, expected
from .procs import RedisServer


def test_redelivered_steps_change_nothing(monkeypatch):
    server = RedisServer().start()
    try:
        monkeypatch.setenv("QJM_REDIS_URL", server.url)
        # No worker listens here, so the enqueued messages just wait; the steps run in-process.
        js = JobManager().run([basis_state(k, name=f"i{k}") for k in range(5)], backend="aer_simulator",
                              shots=32, max_experiments_per_job=3)
        sid, pipe, r = js.job_set_id(), Pipeline(), server.client()
        for i in range(2):
            pipe.transpile(sid, i)
            isa = r.get(keys.isa(sid, i))
            pipe.transpile(sid, i)
            assert r.get(keys.isa(sid, i)) == isa
            pipe.submit(sid, i)
            first = (pipe.store.job(sid, i), r.get(keys.result(sid, i)))
            pipe.submit(sid, i)
            assert (pipe.store.job(sid, i), r.get(keys.result(sid, i))) == first
            assert pipe.poll(sid, i) is None and pipe.poll(sid, i) is None
        assert js.statuses() == [JobStatus.DONE, JobStatus.DONE]
        assert pipe.assemble(sid) is JobSetStatus.DONE
        combined = r.get(keys.combined(sid))
        assert pipe.assemble(sid) is JobSetStatus.DONE
        assert r.get(keys.combined(sid)) == combined
        results = js.results(timeout=5)
        assert [results.get_counts(k) for k in range(5)] == [{expected(k): 32} for k in range(5)]
        # A final job never moves again, whatever arrives late.
        assert pipe.store.advance(sid, 0, JobStatus.RUNNING) == (JobStatus.DONE, False)
        assert pipe.store.advance(sid, 0, JobStatus.CANCELLED) == (JobStatus.DONE, False)
    finally:
        server.stop()
