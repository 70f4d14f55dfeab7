"""A local emulator of the IBM Quantum Platform REST API that the real qiskit-ibm-runtime talks to.

Why: qjm's remote path (batches, tags, polling, pending limits, throttling, failures) must be
testable without IBM Quantum access, with the unmodified client library. The emulator serves the
IAM token exchange and the ``/api/v1`` endpoints the client uses, offers every fake device of
``qiskit_ibm_runtime.fake_provider`` as ``ibm_<name>``, and runs jobs on noisy Aer; when they
start and end is each device's queue (``queues``). How it misbehaves is one ``Faults`` value
(see ``faults``).
``GET /emulator/stats`` reports what clients did, so tests can assert on it.

Modules: ``faults`` (the knobs), ``records`` (jobs, batches), ``state`` (the service's memory),
``queues`` (when jobs start and end), ``runner`` (computes jobs), ``simulation`` (in a child
process), ``programs`` (what a job computes), ``devices`` (fake backends), ``stats``
(``/emulator/stats``), ``routes`` (endpoints as functions), ``transport`` (HTTP), and this one,
which puts them together.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from .devices import DeviceCatalog
from .faults import Faults
from .routes import DEFAULT_INSTANCE
from .state import ServiceState
from .transport import EmulatorHTTPServer

__all__ = ["DEFAULT_INSTANCE", "Emulator", "serve"]


class Emulator:
    """An emulator instance for tests and the CLI: ``start()`` serves in a background thread.

    ``port=0`` picks a free port; ``url`` is then the address to put in ``QISKIT_IBM_URL``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 catalog: DeviceCatalog | None = None, simulate_apart: bool = False) -> None:
        """``simulate_apart``: simulate jobs in a child process (``simulation``), as
        ``python -m qjm.emulator`` does; tests that share one ``catalog`` simulate in-process."""
        self.state = ServiceState(faults or Faults(), catalog, simulate_apart)
        self.httpd = EmulatorHTTPServer((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        """Tests change knobs (throttling, say) while the emulator runs."""
        self.state.faults = value

    @property
    def throttle(self) -> float:
        return self.state.faults.throttle

    @throttle.setter
    def throttle(self, value: float) -> None:
        self.faults = replace(self.faults, throttle=value)

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="qjm-emulator-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.state.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def received(self, job_id: str) -> dict[str, Any]:
        """What a job asked for, once it ran (``GET /emulator/jobs/{id}`` over HTTP)."""
        return self.state.received(job_id)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8765, faults: Faults | None = None, simulate_apart: bool = True) -> None:
    """Serve until interrupted (Ctrl-C). Binds to loopback unless told otherwise. Jobs are
    simulated in a child process unless ``simulate_apart`` is False; the service answers once
    that process is ready, so its start-up never delays a job."""
    faults = faults or Faults()
    emulator = Emulator(host, port, faults, simulate_apart=simulate_apart)
    if emulator.state.runner.child is not None:
        emulator.state.runner.child.wait_ready()
    knobs = ", ".join(f"{k}={v}" for k, v in vars(faults).items())
    print(
        f"qjm IBM Quantum emulator on {emulator.url} ({len(emulator.state.catalog.names())} devices, {knobs})\n"
        f"  export QISKIT_IBM_URL={emulator.url}",
        flush=True,
    )
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.httpd.server_close()
        emulator.state.stop()
