"""``make soak``: run the fault tests K times in a row and print passes per test.

A test that fails once in N runs is a bug in qjm until shown otherwise; this is how N is found.
Usage: python tests/soak.py [K] [pytest args...]   (K defaults to $SOAK or 10)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR) (\S+)", re.MULTILINE)


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv and argv[0].isdigit() else int(os.environ.get("SOAK", "10"))
    extra = argv[1:] if argv and argv[0].isdigit() else argv
    passes: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    started = time.monotonic()
    for k in range(1, runs + 1):
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "-m", "fault",
                               *extra], cwd=ROOT, capture_output=True, text=True)
        for outcome, test in OUTCOME.findall(done.stdout):
            seen[test] += 1
            passes[test] += outcome == "PASSED"
        failed = [t for o, t in OUTCOME.findall(done.stdout) if o != "PASSED"]
        print(f"run {k}/{runs}: {'all passed' if not failed else 'FAILED ' + ', '.join(failed)}", flush=True)
        if failed:
            log = ROOT / f".soak-run-{k}.log"
            log.write_text(done.stdout + done.stderr)
            print(f"  output kept in {log.name}", flush=True)
    print(f"\n{'test':<90} passes")
    for test in sorted(seen):
        print(f"{test:<90} {passes[test]}/{seen[test]}")
    print(f"\n{sum(passes.values())} passed, {sum(seen.values()) - sum(passes.values())} failed "
          f"in {runs} runs ({time.monotonic() - started:.0f} s)")
    return 0 if passes == seen else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
