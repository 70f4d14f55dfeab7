"""IBM Quantum through the real qiskit-ibm-runtime client (or a qjm emulator of the service).

- ``account``: which service to talk to (from ``Settings``), emulator detection, the
  per-process service and backend objects.
- ``batches``: a job set's batch, opened once and used by id from any process.
- ``errors``: client errors classified into ``RetryLater`` / ``ExecutorError``.
- ``client_patches``: the only code touching the client's private members or ``os.environ``.
- ``devices``: the service's device listing, one request for every backend.
- ``executor``: ``IBMQuantumExecutor``, the executor protocol on top of them.
"""

from .account import Account, is_emulator
from .devices import list_devices
from .errors import RetryDelays, classify, service_message
from .executor import IBMQuantumExecutor

__all__ = ["Account", "IBMQuantumExecutor", "RetryDelays", "classify", "is_emulator", "list_devices", "service_message"]
