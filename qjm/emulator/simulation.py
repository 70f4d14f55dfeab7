"""Jobs simulated in a child process, so the service answers while a job simulates.

A noisy Aer run holds the GIL for tens of milliseconds at a time (each run converts the device's
noise model into Aer's own form: 60-100 ms a job on a 5-qubit device, in stretches of up to 70 ms).
Run in the emulator's own process, that stalled every request and every timer meanwhile: a
client polling or posting right after another job's post waited for it, and a job ended late,
neither of which the real service does (see ``state``: no request waits for a simulation).
``python -m qjm.emulator`` therefore runs programs here; the in-process ``Emulator`` of the
tests keeps running them in its runner thread, next to the device catalogue the tests share.

One child process runs the jobs one at a time, as the runner hands them over: it reads one JSON
line per job (backend, program, params) and answers one JSON line (the result text or the
failure reason, and the record of what the job asked for). No pickle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any, TextIO

from .programs import ProgramError, run_program

#: What the child process runs.
CHILD_CODE = f"from {__name__} import main; main()"


class ChildSimulator:
    """The child process, started at once (it imports Qiskit and Aer for a few seconds) and
    started again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._ready = False
        self._start()

    def _start(self) -> None:
        # Not ``-m``: that runs this module as ``__main__`` after its package (which imports it) has
        # already imported it as itself, and runpy warns on stderr at every start.
        self._proc = subprocess.Popen([sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        self._ready = False

    def _line(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            self._proc = None
            raise RuntimeError(f"the emulator's simulation process exited ({code})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def wait_ready(self) -> None:
        """Block until the child has imported what it runs programs with."""
        with self._lock:
            self._wait_ready()

    def _wait_ready(self) -> None:
        if self._proc is None:
            self._start()
        if not self._ready:
            self._line()  # {"ready": true}
            self._ready = True

    def run(self, backend: str, program_id: str, params: dict[str, Any], received: dict[str, Any]) -> str:
        """``programs.run_program`` on ``backend``'s noisy simulator, in the child; ``received``
        is filled as there. A program's failure raises ``ProgramError`` with the same reason."""
        line = json.dumps({"backend": backend, "program_id": program_id, "params": params}, separators=(",", ":"))
        with self._lock:
            for attempt in (1, 2):  # a child found gone before it took the job is started again
                self._wait_ready()
                assert self._proc is not None and self._proc.stdin is not None
                try:
                    self._proc.stdin.write(line + "\n")
                    self._proc.stdin.flush()
                    break
                except OSError as exc:
                    self._proc.kill()
                    self._proc = None
                    if attempt == 2:
                        raise RuntimeError(f"the emulator's simulation process is gone: {exc}") from exc
            answer = self._line()
        received.update(answer.get("received") or {})
        if answer.get("reason") is not None:
            raise ProgramError(str(answer["reason"]))
        return str(answer["result"])

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child ends at the end of its input
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def serve_jobs(requests: TextIO, answers: TextIO) -> None:
    """The child's loop: one job per line in, one answer per line out, until the input ends."""
    from .devices import DeviceCatalog

    catalog = DeviceCatalog()
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in requests:
        job = json.loads(line)
        received: dict[str, Any] = {}
        answer: dict[str, Any] = {"received": received}
        try:
            answer["result"] = run_program(catalog.simulator(job["backend"]), job["program_id"], job["params"],
                                           received)
        except ProgramError as exc:
            answer["reason"] = str(exc)
        except Exception as exc:  # a bad circuit must fail its job, not the child (as in ``runner``)
            answer["reason"] = f"{type(exc).__name__}: {exc}"
        answers.write(json.dumps(answer, separators=(",", ":")) + "\n")
        answers.flush()


def main() -> None:
    # Answers go out on the original stdout; anything a library prints goes to stderr instead.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    serve_jobs(sys.stdin, answers)


if __name__ == "__main__":
    main()
