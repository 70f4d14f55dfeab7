"""The ``qjm`` command as a user runs it: real processes, real Redis, real workers."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
from qiskit import QuantumCircuit, qpy
from rich.console import Console

from qjm import JobManager, JobSetStatus, JobStatus, QJMError
from qjm.config import Settings
from qjm.ops.cli import APP, FLOWER_AUTH_CHILD_ENV, WORKER_INCLUDES, flower_argv, flower_env, worker_argv
from qjm.ops.progress import MAX_JOB_BARS, watch

from .circuits import basis_state, expected
from .ops_fixtures import QJM, Proc, env_for, qjm
from .procs import RedisServer, free_port

BELL2 = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

GHZ3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
x q[0];
x q[2];
c = measure q;
"""


@pytest.fixture
def circuit_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "bell.qasm").write_text(BELL2)
    (tmp_path / "five.qasm").write_text(GHZ3)  # OpenQASM 3: |101>
    unnamed = QuantumCircuit(3, 3)
    unnamed.x(1)
    unnamed.measure(range(3), range(3))
    with open(tmp_path / "batch.qpy", "wb") as fh:
        qpy.dump([basis_state(3, name="three"), unnamed, basis_state(6, name="six")], fh)
    (tmp_path / "junk.txt").write_text("hello, not a circuit\n")
    (tmp_path / "broken.qasm").write_text("OPENQASM 2.0;\nqreg q[1];\nfoo q[0];\n")
    return {p.stem: p for p in tmp_path.iterdir()}


@pytest.fixture
def env(redis_server, worker) -> dict[str, str]:
    return env_for(redis_server.url)


def test_run_watch_status_results_list(env, circuit_files, tmp_path):
    files = [str(circuit_files[k]) for k in ("bell", "five", "batch")]
    run = qjm("run", *files, "--backend", "aer_simulator", "--name", "cli-set", "--max-per-job", "2",
              "--shots", "200", "--tag", "cli", "--tag", "t2", env=env)
    assert run.returncode == 0, run.stderr
    sid = run.stdout.strip()
    assert len(sid) == 32 and "\n" not in sid  # only the id on stdout, for `ID=$(qjm run ...)`

    watched = qjm("watch", sid, env=env)
    assert watched.returncode == 0, watched.stderr
    assert "DONE" in watched.stdout and "job 2 (4-4)" in watched.stdout

    out = tmp_path / "counts.json"
    res = qjm("results", sid, "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["status"] == "DONE" and doc["job_set_id"] == sid
    exps = doc["experiments"]
    assert [e["name"] for e in exps] == ["bell", "five", "three", "batch-1", "six"]
    assert set(exps[0]["counts"]) <= {"00", "11"} and sum(exps[0]["counts"].values()) == 200
    assert exps[1]["counts"] == {"101": 200}
    assert exps[2]["counts"] == {expected(3): 200}
    assert exps[3]["counts"] == {"010": 200}
    assert exps[4]["counts"] == {expected(6): 200}

    status = qjm("status", sid, env=env)
    assert f"ID: {sid}" in status.stdout and "Successful jobs: 3" in status.stdout

    listed = qjm("list", "--name", "cli-set", "--tag", "cli", env=env)
    assert sid in listed.stdout and "3/3" in listed.stdout
    none = qjm("list", "--tag", "no-such-tag", env=env)
    assert none.returncode == 0 and sid not in none.stdout and "no job sets match" in none.stderr


def _one_error_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_user_mistakes_print_one_line(env, circuit_files):
    # Run them side by side: each is a fresh interpreter that imports qiskit.
    dead = env_for(f"redis://127.0.0.1:{free_port()}/0")
    cases = {
        "unknown id": (["status", "0" * 32], env, ["No job set", "0" * 32]),
        "unknown id, results": (["results", "f" * 32], env, ["No job set"]),
        "missing file": (["run", "/no/such/file.qasm", "-b", "aer_simulator"], env, ["Cannot read /no/such/file.qasm"]),
        "not a circuit": (["run", str(circuit_files["junk"]), "-b", "aer_simulator"], env, ["neither QPY nor OpenQASM"]),
        "bad qasm": (["run", str(circuit_files["broken"]), "-b", "aer_simulator"], env, ["not valid OpenQASM 2"]),
        "unknown backend": (["run", str(circuit_files["bell"]), "-b", "no_such_backend"], env, []),
        "redis down": (["list"], dead, ["Cannot reach Redis", dead["QJM_REDIS_URL"]]),
        "redis down, --redis-url": (["--redis-url", dead["QJM_REDIS_URL"], "list"], env, ["Cannot reach Redis"]),
        "redis down, watch": (["watch", "a" * 32], dead, ["Cannot reach Redis"]),
    }
    procs = {k: subprocess.Popen([QJM, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (args, e, _) in cases.items()}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        _one_error_line(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), *cases[k][2])


def test_ctrl_c_stops_watching_and_leaves_the_set_running():
    """No worker listens on this Redis, so the set stays queued while it is watched."""
    idle = RedisServer().start()
    try:
        sid = JobManager(idle.url).run([basis_state(1), basis_state(2)], backend="aer_simulator",
                                       max_experiments_per_job=1).job_set_id()
        watcher = Proc([QJM, "watch", sid], env_for(idle.url), "watch")
        try:
            watcher.wait_output("Ctrl-C stops watching")
            watcher.proc.send_signal(signal.SIGINT)
            assert watcher.proc.wait(60) == 130
            assert "keeps running" in watcher.output() and "Traceback" not in watcher.output()
        finally:
            watcher.stop()
        js = JobManager(idle.url).retrieve_job_set(sid)
        assert js.status() is JobSetStatus.RUNNING and js.statuses() == [JobStatus.QUEUED] * 2

        cancelled = qjm("cancel", sid, env=env_for(idle.url))
        assert cancelled.returncode == 0 and "CANCELLED 2" in cancelled.stdout
        assert js.statuses() == [JobStatus.CANCELLED] * 2
    finally:
        idle.stop()


def test_wait_with_progress_in_python(jm, capsys):
    js = jm.run([basis_state(k) for k in range(4)], backend="aer_simulator", max_experiments_per_job=2, shots=16)
    assert js.wait(timeout=120, progress=True) is JobSetStatus.DONE
    shown = capsys.readouterr().out
    assert "4/4 experiments" in shown and "2/2 jobs" in shown and "DONE 2" in shown
    job_lines = [line for line in shown.splitlines() if line.lstrip().startswith("job ")]
    assert len(job_lines) == 2 and "job 1 (2-3)" in job_lines[1]
    assert all("DONE" in line and not re.search(r"\d/\d", line) for line in job_lines), job_lines

    # Many jobs: one line of counts instead of a bar each; a terminal gets live redraws.
    many = jm.run([basis_state(k % 8) for k in range(MAX_JOB_BARS + 1)], backend="aer_simulator",
                  max_experiments_per_job=1, shots=8)
    buf = io.StringIO()
    final = watch(many.snapshots(timeout=120, every=0.25, jobs=True),
                  console=Console(file=buf, force_terminal=True, width=120))
    assert final is JobSetStatus.DONE
    text = buf.getvalue()
    assert f"{MAX_JOB_BARS + 1} jobs" in text and "job 0 (" not in text
    assert f"{MAX_JOB_BARS + 1}/{MAX_JOB_BARS + 1}" in text


def test_process_commands_start_the_right_program():
    argv = worker_argv(["-Q", "qjm.cpu"])
    assert argv[1:6] == ["-m", "celery", "-A", APP, "worker"] and APP == "workers.app"
    assert argv[6:] == ["-I", WORKER_INCLUDES, "-Q", "qjm.cpu"]
    assert worker_argv(["-I", "mine"])[6:] == ["-I", f"mine,{WORKER_INCLUDES}"]

    assert flower_argv(["--port=1"])[3:] == ["-A", APP, "flower", "--port=1"]
    # Credentials go to Flower through its environment, never its command line.
    with pytest.raises(QJMError, match="QJM_FLOWER_USER and QJM_FLOWER_PASSWORD, or pass --no-auth"):
        flower_env(Settings(flower_user=None, flower_password=None), {})
    assert FLOWER_AUTH_CHILD_ENV not in flower_env(Settings(flower_user=None, flower_password=None), {}, no_auth=True)
    with pytest.raises(QJMError, match="QJM_FLOWER_PASSWORD"):
        flower_env(Settings(flower_user="ops", flower_password=None), {}, no_auth=True)
    assert flower_env(Settings(flower_user="ops", flower_password="pw"), {})[FLOWER_AUTH_CHILD_ENV] == "ops:pw"

    # `qjm worker --help` is celery worker's own help: the options pass straight through.
    helped = qjm("worker", "--help", env=env_for("redis://127.0.0.1:1/0"), timeout=120)
    assert helped.returncode == 0 and "--queues" in helped.stdout and "--concurrency" in helped.stdout


def test_emulator_command_serves_the_emulator():
    pytest.importorskip("qjm.emulator.server")
    port = free_port()
    env = env_for("redis://127.0.0.1:1/0")
    env.pop("PYTHONWARNINGS")  # warnings shown, as in a user's shell
    emu = Proc([QJM, "emulator", "--port", str(port), "--job-seconds", "0.1"], env, "emulator")
    try:
        emu.wait_output(f"127.0.0.1:{port}")  # printed once its simulation process is ready
        assert emu.alive()
        # Nothing on stderr but what the emulator says (once a runpy RuntimeWarning from that process's start).
        assert "Warning" not in emu.output(), emu.output()
    finally:
        emu.stop()
