"""A set whose results would not fit one Redis value: each job's output is kept in parts, and
reading one experiment reads one job.

The test's Redis refuses any value over 1 MB (``proto-max-bulk-len``, its smallest setting), as
a real Redis refuses one over 512 MB; the set's one job produces more than that."""

from __future__ import annotations

import pytest
import redis
from qiskit import QuantumCircuit

from qjm import JobManager
from qjm.store import keys

from .circuits import basis_state
from .procs import RedisServer, Worker

LIMIT = 1024 * 1024
SHOTS = 150_000


@pytest.fixture(scope="module")
def small_values():
    server = RedisServer(config={"proto-max-bulk-len": "1mb"}).start()
    worker = Worker(server.url, concurrency=1, QJM_RESULT_CHUNK_BYTES=str(256 * 1024)).wait_ready()
    yield server
    worker.stop()
    server.stop()


def test_the_redis_refuses_a_value_over_its_limit(small_values):
    with pytest.raises(redis.RedisError):  # it drops the connection
        small_values.client().set("too-big", b"x" * (LIMIT + 1))


def test_memory_of_many_shots_comes_back_whole(small_values, monkeypatch):
    monkeypatch.setenv("QJM_REDIS_URL", small_values.url)
    monkeypatch.setenv("QJM_RESULT_CHUNK_BYTES", str(256 * 1024))
    js = JobManager().run([basis_state(5, n=3), basis_state(2, n=3)], backend="aer_simulator", shots=SHOTS, memory=True)
    results = js.results(timeout=300)
    memory = results.get_memory(0)
    assert len(memory) == SHOTS and set(memory) == {"101"}
    assert results.get_counts(1) == {"010": SHOTS}
    client = small_values.client()
    sizes = {key: client.strlen(key) for key in client.scan_iter(f"qjm:{{{js.job_set_id()}}}:*")
             if client.type(key) == b"string"}
    assert max(sizes.values()) <= 256 * 1024, "no stored value is larger than a part"
    assert sum(sizes.values()) > LIMIT, "the job's output is larger than one value may be"
    assert client.strlen(keys.result(js.job_set_id(), 0)) < 1024, "the job's result key lists its parts"


def test_a_large_pub_result_comes_back_whole(small_values, monkeypatch):
    monkeypatch.setenv("QJM_REDIS_URL", small_values.url)
    monkeypatch.setenv("QJM_RESULT_CHUNK_BYTES", str(256 * 1024))
    circuit = QuantumCircuit(5, name="uniform")
    circuit.h(range(5))  # uniform outcomes: one byte per shot, over 1 MB as JSON
    circuit.measure_all()
    js = JobManager().run([(circuit, None, 1_000_000)], backend="aer_simulator", seed_simulator=3)
    bits = js.results(timeout=300).primitive_result()[0].data.meas
    assert bits.num_shots == 1_000_000 and len(bits.get_counts()) == 32
    assert min(bits.get_counts().values()) > 1_000_000 / 32 * 0.95
    client = small_values.client()
    assert client.strlen(keys.result(js.job_set_id(), 0)) < 1024, "stored in parts"
