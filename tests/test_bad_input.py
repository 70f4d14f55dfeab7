"""Bad input fails with a qjm error that says what to fix, and nothing is written or enqueued."""

from __future__ import annotations

import re

import pytest
from qiskit import QuantumCircuit

from qjm import InvalidInputError, JobManager, QJMError, StoreUnavailableError, UnknownBackendError
from qjm.client.labels import MAX_NAME_LENGTH
from qjm.client.tags import SERVICE_MAX_TAG_LENGTH

from .circuits import basis_state
from .procs import RedisServer, free_port


@pytest.fixture(scope="module")
def quiet_redis():
    """A Redis no worker writes to, so any key that appears came from the call under test."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def empty_jm(quiet_redis, monkeypatch):
    """A manager plus a check that the call wrote nothing to Redis."""
    monkeypatch.setenv("QJM_REDIS_URL", quiet_redis.url)
    client = quiet_redis.client()
    before = set(client.keys("*"))
    yield JobManager()
    assert set(client.keys("*")) == before, "a rejected run() wrote to Redis"


def no_measure() -> QuantumCircuit:
    qc = QuantumCircuit(2, name="bell-unmeasured")
    qc.h(0)
    qc.cx(0, 1)
    return qc


@pytest.mark.parametrize("circuits, backend, kwargs, error, message", [
    ([], "aer_simulator", {}, InvalidInputError, "no circuits"),
    ("OPENQASM 2.0;", "aer_simulator", {}, InvalidInputError, "QuantumCircuit"),
    ([basis_state(1), "h q[0];"], "aer_simulator", {}, InvalidInputError, "Experiment 1 is a str"),
    ([basis_state(1)], "fake_nowhere", {}, UnknownBackendError, "fake_manila"),
    ([basis_state(1, n=6)], "fake_manila", {}, InvalidInputError, "6 qubits but fake_manila has 5"),
    ([basis_state(1), no_measure()], "aer_simulator", {}, InvalidInputError, "Experiment 1 ('bell-unmeasured') has no measurements"),
    ([basis_state(1)], "aer_simulator", {"max_experiments_per_job": 0}, InvalidInputError, "at least 1"),
    ([basis_state(1)], "aer_simulator", {"shots": 0}, InvalidInputError, "shots"),
    ([basis_state(1)], "aer_simulator", {"shots": 10**11}, InvalidInputError, "QJM_MAX_EXECUTIONS_PER_JOB"),
    ([basis_state(1)], "aer_simulator", {"optimization_level": 7}, InvalidInputError, "optimization_level"),
    ([basis_state(1)], "aer_simulator", {"job_tags": "sweep"}, InvalidInputError, "list of strings"),
    ([basis_state(1)], "", {}, UnknownBackendError, "backend is empty"),
])
def test_rejected_before_anything_is_written(empty_jm, circuits, backend, kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        empty_jm.run(circuits, backend=backend, **kwargs)


def test_unreachable_redis_is_named(monkeypatch):
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("QJM_REDIS_URL", url)
    with pytest.raises(StoreUnavailableError, match=f"Cannot reach Redis at {url}.*QJM_REDIS_URL"):
        JobManager().run([basis_state(1)], backend="aer_simulator")
    with pytest.raises(QJMError):
        JobManager().retrieve_job_set("anything")


def test_unknown_job_set_id(empty_jm):
    with pytest.raises(QJMError, match="No job set with id 'nope'"):
        empty_jm.retrieve_job_set("nope")


@pytest.mark.parametrize("odd", ["*", "qjm:*", "../x", "x" * 5000, "a\0b", "", None, 7])
def test_odd_job_set_ids_are_plain_unknown_ids(empty_jm, odd):
    with pytest.raises(QJMError, match="No job set with id"):
        empty_jm.retrieve_job_set(odd)


# ---------------------------------------------------------------------------- primitives
def _param_circuit(measured: bool = True) -> QuantumCircuit:
    from qiskit.circuit import Parameter

    qc = QuantumCircuit(2, name="ansatz")
    qc.ry(Parameter("a"), 0)
    qc.rz(Parameter("b"), 1)
    qc.cx(0, 1)
    if measured:
        qc.measure_all()
    return qc


@pytest.mark.parametrize("experiments, kwargs, message", [
    ([_param_circuit()], {}, "Experiment 0 is not a valid Sampler pub"),  # unbound parameters, no values
    ([(_param_circuit(), [[0.1, 0.2, 0.3]])], {}, "Experiment 0 is not a valid Sampler pub"),  # 3 values for 2 parameters
    ([(no_measure(), "ZZZ")], {"primitive": "estimator"}, "Experiment 0 is not a valid Estimator pub"),  # wider observable
    ([(no_measure(), "ZZ")], {"primitive": "estimator", "precision": 0}, "precision must be a number above 0"),
    ([(no_measure(), "ZZ", None, -0.1)], {"primitive": "estimator"}, "Experiment 0's precision must be a number above 0"),
    ([(no_measure(), "ZZ")], {"primitive": "estimator", "precision": 1e-5}, "one element needs 10,000,000,000 executions"),
    ([(no_measure(), "ZZ")], {"primitive": "estimator", "shots": 100}, "The Estimator takes a precision, not shots"),
    ([(_param_circuit(), [0.1, 0.2], 0)], {}, "Experiment 0's shots must be a whole number of at least 1"),
    ([basis_state(1)], {"options": {"twirling": {"enable_gates": "maybe"}}}, "options the sampler does not take: twirling.enable_gates"),
    ([basis_state(1)], {"options": {"resilience": {"measure_mitigation": True}}}, "options the sampler does not take: resilience"),
    ([basis_state(1)], {"options": {"default_shots": 10}}, "pass shots= to run"),
    ([basis_state(1)], {"primitive": "qaoa"}, "primitive must be 'sampler' or 'estimator'"),
    ([(no_measure(), "ZZ")], {}, "looks like an Estimator pub"),
    ([basis_state(1)], {"primitive": "estimator"}, "an Estimator pub needs observables"),
    ([(_param_circuit(False), [0.1, 0.2])], {"primitive": "estimator"}, "must be observables"),
    ([(no_measure(),)], {}, "has no measurements"),
    ([basis_state(1)], {"precision": 0.1}, "precision is the Estimator's"),
    ((no_measure(), "ZZ"), {"primitive": "estimator"}, "wrap a single pub in a list"),
])
def test_bad_pubs_are_rejected_before_anything_is_written(empty_jm, experiments, kwargs, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        empty_jm.run(experiments, backend="aer_simulator", **kwargs)


def test_configured_simulators_are_refused_with_what_to_pass(empty_jm):
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, depolarizing_error
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(0.1, 1), ["x"])
    for backend in (AerSimulator(noise_model=noise), AerSimulator.from_backend(FakeManilaV2())):
        with pytest.raises(InvalidInputError, match="backend='fake_manila'"):
            empty_jm.run([basis_state(1)], backend=backend)


# ---------------------------------------------------------------------------- the CLI says the same
def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``qjm ARGS`` in this process (its settings from the environment): exit code, stdout, stderr."""
    from qjm.ops.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_refuses_a_negative_limit_as_the_api_does(empty_jm, capsys):
    with pytest.raises(InvalidInputError) as refused:
        empty_jm.job_sets(limit=-1)
    code, out, err = cli(capsys, "list", "--limit", "-1")
    assert code == 1 and out == ""
    assert err.strip() == f"error: {refused.value}"
    assert "no job sets" not in err


@pytest.fixture
def idle_jm(quiet_redis, monkeypatch):
    """A manager whose sets stay queued: no worker reads this Redis."""
    monkeypatch.setenv("QJM_REDIS_URL", quiet_redis.url)
    return JobManager()


def test_an_id_is_taken_in_upper_case_everywhere(idle_jm, capsys):
    js = idle_jm.run([basis_state(1)], backend="aer_simulator", name="cased")
    sid = js.job_set_id()
    upper = sid.upper()
    assert upper != sid
    found = idle_jm.retrieve_job_set(upper)
    assert found == js and found.job_set_id() == sid and found.name() == "cased"
    assert idle_jm.retrieve_job_set(f" {upper}\n").job_set_id() == sid  # pasted with blanks around it

    assert cli(capsys, "tag", upper, "--add", "loud") == (0, f"{sid} tags: loud\n", "")
    code, out, _ = cli(capsys, "status", upper, "--brief")
    assert code == 0 and "cased" in out
    assert cli(capsys, "delete", upper, "--yes") == (0, f"deleted {sid}\n", "")
    with pytest.raises(QJMError, match=f"Job set {sid} was deleted"):
        idle_jm.retrieve_job_set(upper)

    other = idle_jm.run([basis_state(1)], backend="aer_simulator").job_set_id()
    idle_jm.delete_job_set(other.upper())
    with pytest.raises(QJMError, match="was deleted"):
        idle_jm.retrieve_job_set(other)


@pytest.mark.parametrize("bad", ["g" * 32, "0" * 31, "not-an-id", "0" * 32 + "x"])
def test_a_malformed_id_says_what_an_id_looks_like(empty_jm, capsys, bad):
    shape = "a job-set id is 32 hexadecimal characters (0-9 and a-f, in either case)"
    for call in (empty_jm.retrieve_job_set, empty_jm.delete_job_set):
        with pytest.raises(QJMError, match=rf"No job set with id '{bad}': {shape.replace('(', '[(]').replace(')', '[)]')}"):
            call(bad)
    for command in (["status", bad], ["watch", bad], ["delete", bad, "--yes"], ["budget", bad, "none"]):
        code, out, err = cli(capsys, *command)
        assert code == 1 and out == "" and err.startswith(f"error: No job set with id '{bad}': {shape}"), (command, err)


# ---------------------------------------------------------------------------- names and tags: one rule
BAD_LABELS = {
    "empty": ("", "must not be empty or blank"),
    "blank": ("   ", "must not be empty or blank"),
    "NUL": ("a\0b", "control character U+0000 at position 1"),
    "newline": ("two\nlines", "control character U+000A at position 3"),
    "right-to-left override": ("invoice\u202etxt.exe", "RIGHT-TO-LEFT OVERRIDE"),
    "isolate": ("\u2066x", "U+2066"),
    "mark": ("x\u200f", "U+200F"),
}


@pytest.mark.parametrize("label", BAD_LABELS)
def test_a_bad_name_or_tag_is_refused_at_run(empty_jm, label):
    text, message = BAD_LABELS[label]
    with pytest.raises(InvalidInputError, match=f"name .*{re.escape(message)}"):
        empty_jm.run([basis_state(1)], backend="aer_simulator", name=text)
    with pytest.raises(InvalidInputError, match=f"job_tags: the tag .*{re.escape(message)}"):
        empty_jm.run([basis_state(1)], backend="aer_simulator", job_tags=["fine", text])


def test_names_and_tags_have_a_length_limit(empty_jm):
    with pytest.raises(InvalidInputError, match=f"has 100,000 characters; give at most {MAX_NAME_LENGTH}"):
        empty_jm.run([basis_state(1)], backend="aer_simulator", name="n" * 100_000)
    with pytest.raises(InvalidInputError, match=f"has {SERVICE_MAX_TAG_LENGTH + 1} characters"):
        empty_jm.run([basis_state(1)], backend="aer_simulator", job_tags=["t" * (SERVICE_MAX_TAG_LENGTH + 1)])


def test_names_and_tags_at_the_limits_and_beyond_ascii_are_taken(idle_jm):
    longest = "n" * (MAX_NAME_LENGTH - 4) + "Zürich-量子"[:4]
    js = idle_jm.run([basis_state(1)], backend="aer_simulator", name=longest,
                     job_tags=["t" * SERVICE_MAX_TAG_LENGTH, "Zürich ☃ 量子"])
    assert js.name() == longest and len(longest) == MAX_NAME_LENGTH
    assert js.tags() == ["t" * SERVICE_MAX_TAG_LENGTH, "Zürich ☃ 量子"]
    idle_jm.delete_job_set(js.job_set_id())


@pytest.mark.parametrize("label", BAD_LABELS)
def test_a_bad_name_or_tag_is_refused_on_update_and_nothing_changes(idle_jm, label):
    text, message = BAD_LABELS[label]
    js = idle_jm.run([basis_state(1)], backend="aer_simulator", name="before", job_tags=["kept"])
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        js.update_name(text)
    for kwargs in ({"additional_tags": [text]}, {"replacement_tags": [text]}):
        with pytest.raises(InvalidInputError, match=f"the tag .*{re.escape(message)}"):
            js.update_tags(**kwargs)
    again = idle_jm.retrieve_job_set(js.job_set_id())
    assert again.name() == "before" and again.tags() == ["kept"]
    assert idle_jm.job_sets(name="before") == [js] and not idle_jm.job_sets(name=text)
    idle_jm.delete_job_set(js.job_set_id())


def test_the_cli_says_what_it_did_not_make(empty_jm, capsys, tmp_path):
    qasm = tmp_path / "bell.qasm"
    qasm.write_text('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
                    "measure q -> c;\n")
    code, out, err = cli(capsys, "run", str(qasm), "-b", "aer_simulator", "--name", "invoice\u202etxt.exe")
    assert code == 1 and out == ""
    assert err.startswith("error: name 'invoice\\u202etxt.exe' holds the bidirectional formatting character U+202E")
    assert "\u202e" not in err and err.rstrip().endswith("No job set was made.")
    code, _, err = cli(capsys, "run", str(qasm), "-b", "aer_simulator", "--tag", "x" * 101)
    assert code == 1 and err.rstrip().endswith("No job set was made.")
    code, _, err = cli(capsys, "run", str(tmp_path / "missing.qasm"), "-b", "aer_simulator")
    assert code == 1 and err.rstrip().endswith("No job set was made.")


def test_the_cli_says_what_it_did_not_change(idle_jm, capsys):
    sid = idle_jm.run([basis_state(1)], backend="aer_simulator", name="before", job_tags=["kept"]).job_set_id()
    code, out, err = cli(capsys, "rename", sid, "")
    assert (code, out) == (1, "") and err.rstrip().endswith(f"{sid} was not renamed.")
    code, out, err = cli(capsys, "tag", sid, "--add", "a\tb")
    assert (code, out) == (1, "") and err.rstrip().endswith(f"The tags of {sid} were not changed.")
    assert "\t" not in err
    js = idle_jm.retrieve_job_set(sid)
    assert js.name() == "before" and js.tags() == ["kept"]
    idle_jm.delete_job_set(sid)


# ---------------------------------------------------------------------------- unknown backends: one message
def test_an_unknown_local_backend_is_named_with_what_can_be_used(empty_jm, monkeypatch):
    from qjm.executors import LocalExecutor, local_backend_names

    with pytest.raises(UnknownBackendError) as refused:
        empty_jm.run([basis_state(1)], backend="fake_manilla")
    message = str(refused.value)
    assert message.startswith("Unknown backend 'fake_manilla': not a local backend. Did you mean 'fake_manila'")
    listed = message.rsplit(": ", 1)[1].rstrip(".").split(", ")
    assert listed[0] == "fake_manila" and sorted(listed) == sorted(local_backend_names())
    with pytest.raises(UnknownBackendError) as again:
        LocalExecutor("fake_manilla")
    assert str(again.value) == message  # the executor, where a worker resolves the name, says the same

    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no saved account either
    with pytest.raises(UnknownBackendError) as remote:
        empty_jm.run([basis_state(1)], backend="manila")
    message = str(remote.value)
    assert message.startswith("Unknown backend 'manila': not a local backend, and IBM Quantum could not be asked")
    assert "QISKIT_IBM_TOKEN" in message and "Did you mean 'fake_manila'?" in message
    listed = message.rsplit(": ", 1)[1].rstrip(".").split(", ")
    assert listed == ["fake_manila", *sorted(n for n in local_backend_names() if n != "fake_manila")]


def test_an_unknown_ibm_backend_is_named_with_the_accounts_devices(empty_jm, monkeypatch):
    from qjm.emulator import Emulator, Faults
    from qjm.executors import local_backend_names
    from qjm.executors.ibm import IBMQuantumExecutor

    with Emulator("127.0.0.1", 0, Faults(job_seconds=0.1)) as emu:
        for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "IAM_URL",
                     "QISKIT_FUNCTIONS_EXPERIMENTAL"):
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
        monkeypatch.setenv("QISKIT_IBM_URL", emu.url)
        with pytest.raises(UnknownBackendError) as refused:
            empty_jm.run([basis_state(1)], backend="ibm_manilla")
        with pytest.raises(UnknownBackendError) as in_worker:
            IBMQuantumExecutor("ibm_manilla").backend()
        devices = emu.state.catalog.names()
    message = str(refused.value)
    assert message == str(in_worker.value)
    assert message.startswith("Unknown backend 'ibm_manilla': IBM Quantum has no device of that name for this "
                              "account. Did you mean 'ibm_manila'")
    listed = message.rsplit(": ", 1)[1].rstrip(".").split(", ")
    assert listed[0] == "ibm_manila" and sorted(listed) == sorted([*devices, *local_backend_names()])
