"""Every Python block of README.md and docs/ runs, as a reader would run it.

The blocks of one page run in order in one fresh Python process (later blocks use what earlier ones
made), against a private redis-server, a real Celery worker and qjm's IBM Quantum emulator (the
``ibm_*`` devices of the IBM examples), reached the way a user reaches them: ``QJM_REDIS_URL`` and
``QISKIT_IBM_URL``. A block preceded by ``<!-- not run: REASON -->`` is skipped; the reason is required.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from qjm.ops.cluster import EmulatorProcess

from .procs import ROOT, RedisServer, Worker, worker_env

SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Fewer runnable blocks than this means examples were lost (or marked not run) by mistake.
MIN_RUNNABLE = 18
#: The IBM client's own variables: a user's real account must not leak into the examples' emulator runs.
IBM_ACCOUNT = ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "IAM_URL", "QISKIT_FUNCTIONS_EXPERIMENTAL")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->\s*$")

RUNNER = r"""
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    print(f"--- {block['where']}", flush=True)
    # Padded so a traceback names the block's own line in the Markdown file.
    exec(compile("\n" * block["line"] + block["source"], block["file"], "exec"), namespace)
print("--- all blocks ran", flush=True)
"""


@dataclass
class Block:
    path: str
    line: int  # line of the block's first line of code, counted from 0
    source: str
    skipped: str | None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line + 1}"


def blocks_of(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        if "<!--" in before and "not run" in before and reason is None:
            raise AssertionError(f"{path}: a `not run` mark without a reason before line {text.count(chr(10), 0, m.start()) + 1}")
        out.append(Block(str(path.relative_to(ROOT)), text.count("\n", 0, m.start(1)), m.group(1),
                         reason.group(1) if reason else None))
    return out


PAGES = {str(p.relative_to(ROOT)): blocks_of(p) for p in SOURCES}
RUNNABLE = {page: [b for b in blocks if b.skipped is None] for page, blocks in PAGES.items()}
RAN: list[str] = []


@pytest.fixture(scope="module")
def services():
    """A private Redis, the emulator (as its own process, as `qjm emulator` runs) and one real worker."""
    redis = RedisServer().start()
    emulator = EmulatorProcess(job_seconds=0.5).wait_ready()
    env = {"QISKIT_IBM_URL": emulator.url, "QJM_RECONCILE_GRACE": "5"}
    with pytest.MonkeyPatch.context() as mp:  # the worker's environment is built from ours: no account in it
        for name in IBM_ACCOUNT:
            mp.delenv(name, raising=False)
        worker = Worker(redis.url, concurrency=2, **env)
    try:
        worker.wait_ready()
        yield redis, env
    finally:
        worker.stop()
        emulator.stop()
        redis.stop()


def example_env(redis_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = worker_env(redis_url, **extra)
    for name in IBM_ACCOUNT:
        env.pop(name, None)
    return env


@pytest.mark.parametrize("page", [p for p, blocks in RUNNABLE.items() if blocks])
def test_examples_of_a_page_run(page, services, tmp_path):
    redis, extra = services
    blocks = RUNNABLE[page]
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([{**b.__dict__, "where": b.where, "file": str(ROOT / b.path)}
                                                                          for b in blocks]),
                          cwd=tmp_path, env=example_env(redis.url, extra), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "--- all blocks ran" in done.stdout, (
        f"an example of {page} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    RAN.extend(b.where for b in blocks)


def test_enough_examples_run(capsys):
    """Every runnable block ran (the page tests above passed), and there are as many as expected."""
    runnable = [b.where for blocks in RUNNABLE.values() for b in blocks]
    skipped = [f"{b.where} ({b.skipped})" for blocks in PAGES.values() for b in blocks if b.skipped]
    with capsys.disabled():
        print(f"\ndocs examples: {len(RAN)} of {len(runnable)} runnable Python blocks ran; "
              f"{len(skipped)} marked not run: {', '.join(skipped) or 'none'}")
    assert len(runnable) >= MIN_RUNNABLE, f"only {len(runnable)} runnable examples (at least {MIN_RUNNABLE} expected)"
    assert sorted(RAN) == sorted(runnable), f"examples that did not run: {sorted(set(runnable) - set(RAN))}"
    assert all(b.skipped for blocks in PAGES.values() for b in blocks if b.skipped is not None)
