# ruff: noqa: F403, F405, UP032 - the old code as it was written (star import, str.format)
"""Job Manager code as a user of the old ``IBMQJobManager`` wrote it: the 2019 tutorial's (seeds 002)
and the reference page's (seeds 000/001), then the old ``ManagedJobSet`` calls they list.

Changed from the old code: the import of the manager, and the account lines (``IBMQ`` and its
provider are gone; the tutorial's ``ibmq_qasm_simulator`` is Aer's simulator). Everything from
``job_manager = IBMQJobManager()`` on is the old code. Run by tests/test_old_job_manager.py with
QJM_REDIS_URL pointing at a Redis that has workers.
"""

from qiskit import *
from qiskit.circuit.random import random_circuit
from qiskit.compiler import transpile
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from qjm import JobManager as IBMQJobManager  # was: from qiskit.providers.ibmq.managed import IBMQJobManager

provider = None  # was: provider = IBMQ.load_account()
sim_backend = AerSimulator()  # was: sim_backend = provider.get_backend('ibmq_qasm_simulator')
backend = sim_backend  # was: backend = provider.get_backend('ibmq_qasm_simulator')

# ---- the tutorial (seeds 002)
qr = QuantumRegister(3)
cr = ClassicalRegister(3)
circuit = QuantumCircuit(qr, cr)
circuit.x(qr[0])
circuit.x(qr[1])
circuit.ccx(qr[0], qr[1], qr[2])
circuit.cx(qr[0], qr[1])
circuit.measure(qr, cr)

circs = transpile([circuit]*20, backend=sim_backend)

# Submit them all to the backend
job_manager = IBMQJobManager()
job_set = job_manager.run(circs, backend=sim_backend, name='foo')

print(job_set.report())

# Restrict 2 experiments per job.
job_set_multiple = job_manager.run(circs, backend=sim_backend, name='bar', max_experiments_per_job=2)

print(job_set_multiple.report())

results = job_set_multiple.results()
print("This is the histogram data for experiment 1: {}".format(results.get_counts(1)))
print("This is the histogram data for experiment 2: {}".format(results.get_counts(2)))

job_set_id = job_set_multiple.job_set_id()
retrieved_job_set = job_manager.retrieve_job_set(job_set_id=job_set_id, provider=provider)

jobs = retrieved_job_set.jobs()  # Get a list of all jobs in the set.
job0 = jobs[0]
if job0 is None:
    print("Job0 submit failed!")

# ---- the reference (seeds 000/001)
# Build a thousand circuits.
circs = []
for _ in range(1000):
    circs.append(random_circuit(num_qubits=5, depth=4, measure=True))

# Need to transpile the circuits first.
circs = transpile(circs, backend=backend)

# Use Job Manager to break the circuits into multiple jobs.
job_manager = IBMQJobManager()
job_set_foo = job_manager.run(circs, backend=backend, name='foo')

results = job_set_foo.results()
results.get_counts(5)  # Counts for experiment 5.

job_set_id = job_set_foo.job_set_id()
retrieved_foo = job_manager.retrieve_job_set(job_set_id=job_set_id, provider=provider)

# ---- the ManagedJobSet calls the tutorial lists, as old code used them
assert retrieved_foo == job_set_foo and job_set_foo in job_manager.job_sets(name='foo')
assert all(status == JobStatus.DONE for status in job_set_foo.statuses())
assert job_set_multiple.statuses()[0] == JobStatus.DONE
assert job_set_foo.error_messages() is None
assert sum(results.get_counts(999).values()) == 1024
managed = job_set_multiple.managed_jobs()
assert [(m.start_index, m.end_index) for m in managed][:2] == [(0, 1), (2, 3)]
assert results.data(5)['counts'] == {hex(int(k, 2)): v for k, v in results.get_counts(5).items()}
assert 'foo' in job_manager.report()
job_set_multiple.update_tags(additional_tags=['tutorial'])
assert job_manager.job_sets(name='bar')[0].tags() == ['tutorial']
print("done")
