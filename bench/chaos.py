"""``make chaos``: job sets under a seeded random schedule of faults, then a scorecard.

A benchmark, not a test: it checks qjm's promise ("What qjm guarantees" in the README) under many
faults in a row rather than one at a time. While sets of known circuits run locally (aer_simulator,
fake_manila) and on the emulator (ibm_manila), it injects, a few seconds apart:

* ``worker_kill``: SIGKILL of a worker's process group; a replacement starts a moment later, as a
  supervisor would.
* ``redis_restart``: ``kill -9`` of Redis, then a restart on the same port and directory (it replays
  its append-only file); any worker that exits on losing its broker is restarted and counted.
* ``queue_loss``: the broker's lists ``qjm.cpu`` and ``qjm.io`` deleted (a purge, a lost write).
* ``unacked_loss``: a worker SIGKILLed and the broker's ``unacked`` hash deleted with it, so the
  messages it held are gone from Redis too.
* ``throttle_storm`` / ``error_storm``: a share of the IBM API requests answered 429 / 503 for a
  while. The emulator's own knobs are fixed at its start and restarting it would forget its jobs
  (a fault the real service does not have), so a small proxy between the workers and the emulator
  answers them, exactly as the emulator's ``--throttle`` / ``--server-errors`` do: before the
  request reaches the service, with ``Retry-After`` on GETs.
* ``link_cut``: a host cut off, approximated on one machine by SIGSTOP of a worker's process group
  for longer than the grace, then SIGCONT. A true network cut (the process runs on, its packets are
  lost) is not simulated here: ``tests/test_hosts.py`` pulls a worker host's cable (network namespaces).

Afterwards nothing is injected or submitted; every set gets ``grace + 120 s`` to end. Then every
set's results are checked at every global index (each circuit prepares one basis state, so its
outcome is known), and every ``qjm:<set>:<job>:a<attempt>`` tag must have exactly one post on the
emulator. Exit 0 when there are no hung, wrong, failed or duplicate sets and every set ended within
the documented bound after its last fault; 1 otherwise.

Settings (environment): ``CHAOS_SECONDS`` (fault window, 180), ``CHAOS_SEED`` (the schedule, the
sets' circuits and the storms' dice; random if unset and printed, so a run can be replayed: the
same faults in the same order, though what each one hits depends on timing), ``CHAOS_GRACE``
(``QJM_RECONCILE_GRACE``, 5), ``CHAOS_IN_FLIGHT`` (sets running at once, 4).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=DeprecationWarning)
logging.getLogger("qiskit_ibm_runtime").setLevel(logging.ERROR)  # "Loading account with the given token"

from qjm import JobManager, JobSetStatus, ManagedJobSet  # noqa: E402
from qjm.config import Settings  # noqa: E402
from qjm.emulator.routes import error as service_error  # noqa: E402
from qjm.ops.cluster import EmulatorProcess, RedisProcess, WorkerProcess, free_port  # noqa: E402
from tests.circuits import basis_state, expected  # noqa: E402

SECONDS = float(os.environ.get("CHAOS_SECONDS", "180"))
SEED = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
GRACE = float(os.environ.get("CHAOS_GRACE", "5"))
IN_FLIGHT = int(os.environ.get("CHAOS_IN_FLIGHT", "4"))
WORKERS, CONCURRENCY = 3, 2
POLL_CAP = 5  # QJM_MAX_POLL_INTERVAL for this run: the bound's poll interval
JOB_SECONDS, PENDING_LIMIT = 1.0, 3
QUBITS, SHOTS = 4, 128
DRAIN = GRACE + 120
#: (backend, experiments, experiments per job) of the sets submitted, drawn in turn by the seed.
PLANS = [("aer_simulator", 16, 4), ("fake_manila", 16, 4), ("ibm_manila", 8, 2), ("ibm_manila", 8, 2)]
#: Fault kinds and their weights in the draw.
KINDS = {"worker_kill": 2, "redis_restart": 1, "queue_loss": 2, "unacked_loss": 1,
         "throttle_storm": 1, "error_storm": 1, "link_cut": 1}
ATTEMPT_TAG = re.compile(r"^qjm:[^:]+:\d+:a\d+$")
FINAL = {JobSetStatus.DONE, JobSetStatus.ERROR, JobSetStatus.CANCELLED}

console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)
T0 = time.time()


def stamp() -> str:
    return f"[{time.time() - T0:7.1f}s]"


def say(text: str) -> None:
    console.print(f"{stamp()} {text}")


# ----------------------------------------------------------------------------- the storm proxy
class StormProxy:
    """Forwards HTTP to the emulator; during a storm answers a share of ``/api/v1`` requests with
    429 or 503 before they reach it, as the emulator's own fault knobs would (which cannot be
    changed while it runs)."""

    HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
           "content-length"}

    def __init__(self, target_port: int, seed: int) -> None:
        self.target_port = target_port
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.throttle = 0.0
        self.server_errors = 0.0
        self.answered: Counter[int] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, payload = proxy.answer(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_one

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                """A worker SIGKILLed mid-request leaves a broken pipe: expected here, not news."""
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.httpd = Server(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> StormProxy:
        self.thread.start()
        return self

    def storm(self, throttle: float = 0.0, server_errors: float = 0.0) -> None:
        with self.lock:
            self.throttle, self.server_errors = throttle, server_errors

    def _roll(self, p: float) -> bool:
        with self.lock:
            return p > 0 and self.rng.random() < p

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        if path.startswith("/api/v1"):
            refusal = None
            if self._roll(self.throttle):
                extra = {"Retry-After": "1"} if method in ("GET", "HEAD") else {}
                refusal = service_error(429, "Too many requests: the rate limit was exceeded, retry later", 429, extra)
            elif self._roll(self.server_errors):
                refusal = service_error(503, "Service temporarily unavailable (qjm chaos storm)", 503)
            if refusal is not None:
                with self.lock:
                    self.answered[refusal.status] += 1
                return (refusal.status, [*refusal.headers.items(), ("Content-Type", "application/json")],
                        json.dumps(refusal.body).encode())
        conn = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=60)
        try:
            conn.request(method, path, body=body or None,
                         headers={k: v for k, v in headers.items() if k.lower() not in self.HOP})
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in self.HOP], payload
        except OSError as exc:
            return 502, [("Content-Type", "text/plain")], f"chaos proxy: emulator unreachable: {exc}".encode()
        finally:
            conn.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- bookkeeping
@dataclass
class Fault:
    """One injected fault: from ``start`` until the system was whole again (``restored``: Redis
    answering, the worker thawed or its replacement ready, the storm over)."""

    kind: str
    start: float
    detail: str = ""
    restored: float | None = None
    waiting_for: set[int] = field(default_factory=set)  # worker slots whose (re)start it waits for

    def done(self, at: float | None = None) -> None:
        if not self.waiting_for:
            self.restored = max(self.restored or 0.0, at or time.time())


@dataclass
class TrackedSet:
    js: ManagedJobSet
    backend: str
    states: list[int]
    created: float
    status: JobSetStatus = JobSetStatus.RUNNING
    ended: float | None = None

    @property
    def id(self) -> str:
        return self.js.job_set_id()


@dataclass
class Slot:
    """One supervised worker: ``restart_at`` is set when it was taken down on purpose."""

    worker: WorkerProcess
    restart_at: float | None = None
    stopped: bool = False
    starting: bool = False
    fault: Fault | None = None


class Chaos:
    """The processes, the three background loops (submit, watch, supervise) and the injector."""

    def __init__(self) -> None:
        self.rng_faults = random.Random(SEED)
        self.rng_sets = random.Random(SEED + 1)
        self.sets: list[TrackedSet] = []
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.submitting = threading.Event()
        self.stopping = threading.Event()
        self.redis: RedisProcess | None = None
        self.emulator: EmulatorProcess | None = None
        self.proxy: StormProxy | None = None
        self.slots: list[Slot] = []
        self.all_workers: list[WorkerProcess] = []
        self.threads: list[threading.Thread] = []
        self.keep_logs = True  # until the run shows there is nothing to look into

    # ------------------------------------------------------------------ processes
    def new_worker(self) -> WorkerProcess:
        assert self.redis and self.proxy
        w = WorkerProcess(self.redis.url, concurrency=CONCURRENCY, QISKIT_IBM_URL=self.proxy.url,
                          QJM_RECONCILE_GRACE=str(GRACE), QJM_MAX_POLL_INTERVAL=str(POLL_CAP),
                          QJM_MAX_PENDING_JOBS=str(PENDING_LIMIT))
        self.all_workers.append(w)
        return w

    def start(self) -> None:
        self.redis = RedisProcess(appendonly=True).start()
        self.emulator = EmulatorProcess(job_seconds=JOB_SECONDS, pending_limit=PENDING_LIMIT, seed=SEED).wait_ready()
        self.proxy = StormProxy(self.emulator.port, SEED + 2).start()
        os.environ["QISKIT_IBM_URL"] = self.emulator.url  # the client validates backends directly
        self.slots = [Slot(self.new_worker()) for _ in range(WORKERS)]
        for slot in self.slots:
            slot.worker.wait_ready()
        self.jm = JobManager(self.redis.url)
        say(f"redis {self.redis.url} (appendonly), emulator {self.emulator.url} behind storm proxy {self.proxy.url}, "
            f"{WORKERS} workers x {CONCURRENCY} processes, grace {GRACE:g} s, poll cap {POLL_CAP} s")

    def close(self) -> None:
        """Everything this run started, whatever state it is in (frozen workers included)."""
        self.stopping.set()
        self.submitting.clear()
        for t in self.threads:  # the supervisor must not start a worker behind our back
            t.join(timeout=5)
        for w in self.all_workers:
            w.signal_group(signal.SIGCONT)
            w.kill(signal.SIGKILL)
            w.stop()
        if self.proxy:
            self.proxy.stop()
        if self.emulator:
            self.emulator.stop()
        if self.redis:
            self.redis.stop()
        if not self.keep_logs:
            for path in [w.log for w in self.all_workers] + ([self.emulator.log] if self.emulator else []):
                Path(path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ background loops
    def spawn(self, fn: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def submit_one(self, backend: str, n: int, per_job: int) -> TrackedSet:
        states = [self.rng_sets.randrange(1 << QUBITS) for _ in range(n)]
        circuits = [basis_state(s, n=QUBITS, name=f"c{k}-s{s}") for k, s in enumerate(states)]
        js = self.jm.run(circuits, backend=backend, shots=SHOTS, max_experiments_per_job=per_job, name="chaos")
        tracked = TrackedSet(js, backend, states, time.time())  # run() returned: the promise starts
        try:
            tracked.created = js.record().created
        except Exception:  # noqa: BLE001 - Redis went down just now; the return time will do
            pass
        with self.lock:
            self.sets.append(tracked)
        return tracked

    def submitter(self) -> None:
        """Keeps IN_FLIGHT sets running while submitting is on; a refused run() (Redis down) is
        counted and retried, and never counts as a started set (the promise starts at its return)."""
        while not self.stopping.is_set():
            if self.submitting.is_set():
                with self.lock:
                    running = sum(1 for s in self.sets if s.ended is None)
                if running < IN_FLIGHT:
                    backend, n, per_job = self.rng_sets.choice(PLANS)
                    try:
                        self.submit_one(backend, n, per_job)
                    except Exception as exc:  # noqa: BLE001 - Redis down mid-run(): not started
                        self.counts["run() refused"] += 1
                        say(f"[dim]run() refused: {type(exc).__name__}: {str(exc)[:100]}[/]")
                        time.sleep(1.0)
                    continue
            time.sleep(0.2)

    def watcher(self) -> None:
        """Notes when each set ends (the ``finished`` time its assembly wrote)."""
        while not self.stopping.is_set():
            with self.lock:
                running = [s for s in self.sets if s.ended is None]
            for s in running:
                try:
                    rec = s.js.record()
                except Exception:  # noqa: BLE001 - Redis down: look again
                    break
                if rec.status in FINAL:
                    s.status, s.ended = rec.status, rec.finished or time.time()
            time.sleep(0.3)

    def supervisor(self) -> None:
        """Restarts workers as a process supervisor would: a killed one after its planned delay,
        one that exited by itself at once (counted)."""
        while not self.stopping.is_set():
            now = time.time()
            with self.lock:
                for k, slot in enumerate(self.slots):
                    w = slot.worker
                    if slot.starting and w.is_ready():
                        slot.starting = False
                        say(f"worker slot {k}: {w.name} ready")
                        if slot.fault:
                            slot.fault.waiting_for.discard(k)
                            slot.fault.done()
                            slot.fault = None
                        continue
                    if w.proc.poll() is None:
                        continue
                    if slot.restart_at is None:  # nobody killed it: it exited by itself
                        self.counts["worker exited by itself"] += 1
                        tail = w.output().strip().splitlines()[-1:] or [""]
                        say(f"[yellow]worker slot {k}: {w.name} exited by itself (rc {w.proc.returncode}): "
                            f"{tail[0][:120]}[/]")
                        slot.restart_at = now
                        slot.fault = slot.fault or (self.faults[-1] if self.faults else None)
                        if slot.fault:
                            slot.fault.waiting_for.add(k)
                    if now >= slot.restart_at:
                        slot.worker, slot.restart_at, slot.starting = self.new_worker(), None, True
                        self.counts["worker restarts"] += 1
                        say(f"worker slot {k}: replacement {slot.worker.name} starting")
            time.sleep(0.5)

    # ------------------------------------------------------------------ faults
    def live_slots(self) -> list[int]:
        return [k for k, s in enumerate(self.slots)
                if s.worker.proc.poll() is None and not s.starting and not s.stopped and s.restart_at is None]

    def kill_worker(self, fault: Fault) -> int | None:
        with self.lock:
            live = self.live_slots()
            if not live:
                return None
            k = self.rng_faults.choice(live)
            slot = self.slots[k]
            slot.worker.kill(signal.SIGKILL)
            slot.restart_at = time.time() + self.rng_faults.uniform(1.0, 4.0)
            slot.fault = fault
            fault.waiting_for.add(k)
            fault.detail += f"slot {k} {slot.worker.name} SIGKILLed"
            return k

    def inject(self, kind: str) -> Fault:
        assert self.redis and self.proxy
        fault = Fault(kind, time.time())
        with self.lock:
            self.faults.append(fault)
        client = self.redis.client()
        if kind == "worker_kill":
            if self.kill_worker(fault) is None:
                fault.detail = "no live worker to kill"
        elif kind == "unacked_loss":
            held = client.hlen("unacked")
            self.kill_worker(fault)
            client.delete("unacked", "unacked_index", "unacked_mutex")
            fault.detail += f"; unacked hash deleted ({held} messages)"
        elif kind == "queue_loss":
            pipe = client.pipeline()  # one MULTI: what was there is exactly what is lost
            pipe.llen("qjm.cpu")
            pipe.llen("qjm.io")
            pipe.delete("qjm.cpu", "qjm.io")
            cpu, io, _ = pipe.execute()
            fault.detail = f"deleted qjm.cpu ({cpu} messages) and qjm.io ({io})"
        elif kind == "redis_restart":
            down = self.rng_faults.uniform(0.5, 2.0)
            say(f"[red]fault {len(self.faults)}: {kind}[/] kill -9, down {down:.1f} s, then a restart from its AOF")
            self.redis.kill()
            time.sleep(down)
            self.redis.start()
            fault.detail = f"kill -9, down {down:.1f} s, restarted from its AOF"
            say(f"redis back after {time.time() - fault.start:.1f} s")
            fault.done()
            return fault
        elif kind in ("throttle_storm", "error_storm"):
            seconds = self.rng_faults.uniform(5.0, 15.0)
            share = 0.6 if kind == "throttle_storm" else 0.4
            self.proxy.storm(**({"throttle": share} if kind == "throttle_storm" else {"server_errors": share}))
            fault.detail = f"{share:.0%} of API requests answered {429 if kind == 'throttle_storm' else 503} for {seconds:.1f} s"
            say(f"[red]fault {len(self.faults)}: {kind}[/] {fault.detail}")
            time.sleep(seconds)
            self.proxy.storm()
            fault.done()
            return fault
        elif kind == "link_cut":
            with self.lock:
                live = self.live_slots()
                k = self.rng_faults.choice(live) if live else None
                if k is not None:
                    self.slots[k].stopped = True
            seconds = GRACE + self.rng_faults.uniform(2.0, 6.0)
            if k is None:
                fault.detail = "no live worker to cut off"
            else:
                w = self.slots[k].worker
                w.signal_group(signal.SIGSTOP)
                fault.detail = f"slot {k} {w.name} SIGSTOPped for {seconds:.1f} s (a host cut off, on one machine)"
                say(f"[red]fault {len(self.faults)}: {kind}[/] {fault.detail}")
                time.sleep(seconds)
                w.signal_group(signal.SIGCONT)
                self.slots[k].stopped = False
            fault.done()
            return fault
        say(f"[red]fault {len(self.faults)}: {kind}[/] {fault.detail}")
        fault.done()
        return fault

    def fault_window(self) -> None:
        kinds, weights = list(KINDS), list(KINDS.values())
        end = time.time() + SECONDS
        while time.time() < end:
            time.sleep(self.rng_faults.uniform(3.0, 8.0))
            if time.time() >= end:
                break
            self.inject(self.rng_faults.choices(kinds, weights)[0])

    # ------------------------------------------------------------------ phases
    def warm_up(self) -> dict[str, float]:
        """Two fault-free rounds of IN_FLIGHT sets at once; the second's longest set per backend is
        the 'remaining work' allowance of the bound (a set never has more left than all of it)."""
        longest: dict[str, float] = {}
        for round_ in range(2):
            plans = [PLANS[k % len(PLANS)] for k in range(max(IN_FLIGHT, len(PLANS)))]
            batch = [self.submit_one(*p) for p in plans]
            for s in batch:
                s.js.wait(timeout=300)
                rec = s.js.record()
                if rec.status is not JobSetStatus.DONE:
                    raise RuntimeError(f"warm-up set {s.id} ended {rec.status.value}:\n{s.js.report()}")
                if round_ == 1:
                    longest[s.backend] = max(longest.get(s.backend, 0.0), (rec.finished or time.time()) - rec.created)
        with self.lock:
            self.sets.clear()
        return longest

    def drain(self, cap: float) -> None:
        deadline = time.time() + cap
        while time.time() < deadline:
            with self.lock:
                if all(s.ended is not None for s in self.sets) and not any(sl.starting or sl.restart_at for sl in self.slots):
                    return
            time.sleep(0.5)


# ----------------------------------------------------------------------------- checks
def check_results(s: TrackedSet) -> list[str]:
    """What is wrong with a DONE set's results, one line per experiment (empty: all right)."""
    problems = []
    results = s.js.results(timeout=30)
    for k, state in enumerate(s.states):
        want = expected(state, QUBITS)
        try:
            counts = results.get_counts(k)
        except Exception as exc:  # noqa: BLE001 - a missing result is a wrong one
            problems.append(f"index {k}: no counts ({exc})")
            continue
        total = sum(counts.values())
        top = max(counts, key=lambda bits: counts[bits]) if counts else None
        exact = s.backend == "aer_simulator"
        if total != SHOTS or top != want or (exact and counts != {want: SHOTS}):
            problems.append(f"index {k}: expected {want}, got {dict(sorted(counts.items(), key=lambda kv: -kv[1])[:4])}")
    return problems


def evidence(chaos: Chaos, set_id: str, limit: int = 12) -> list[str]:
    """The worker log lines that name a set, last ones first cut to ``limit``."""
    lines = []
    for w in chaos.all_workers:
        for line in Path(w.log).read_text(errors="replace").splitlines():
            if set_id in line:
                lines.append(f"{Path(w.log).name}: {line.strip()[:220]}")
    return lines[-limit:]


def on_sigterm(signum: int, frame: Any) -> None:
    """A SIGTERM cleans up like Ctrl-C does."""
    raise KeyboardInterrupt


def main() -> int:
    cfg = Settings(reconcile_grace=GRACE, max_poll_interval=POLL_CAP)
    tick = cfg.reconcile_interval
    fixed_bound = GRACE + tick + cfg.poll_cap
    chaos = Chaos()
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        console.rule(f"qjm chaos: seed {SEED}, fault window {SECONDS:g} s  (replay: CHAOS_SEED={SEED})")
        chaos.start()
        for fn, name in ((chaos.watcher, "watch"), (chaos.supervisor, "supervise"), (chaos.submitter, "submit")):
            chaos.spawn(fn, name)
        allowance = chaos.warm_up()
        say("warm-up (fault-free, same load): longest set "
            + ", ".join(f"{b} {t:.1f} s" for b, t in sorted(allowance.items())))
        chaos.submitting.set()
        chaos.fault_window()
        chaos.submitting.clear()
        window_end = time.time()
        say(f"fault window over: {len(chaos.faults)} faults; no more faults or sets; waiting up to {DRAIN:g} s")
        chaos.drain(DRAIN + 60)  # restarts still under way get their own minute on top
        # Sets still running at the cap are hung.
        hung_cap = window_end + DRAIN
        stats = chaos.emulator.stats() if chaos.emulator else {}
        resent = {k.decode() if isinstance(k, bytes) else k: int(v)
                  for k, v in chaos.redis.client().hgetall("qjm:metrics:resent").items()} if chaos.redis else {}
        storms = dict(chaos.proxy.answered) if chaos.proxy else {}
        # ---------------------------------------------------------------- score
        with chaos.lock:
            sets = list(chaos.sets)
        hung = [s for s in sets if s.ended is None or s.ended > hung_cap]
        failed = [s for s in sets if s.ended is not None and s.status is not JobSetStatus.DONE]
        wrong: dict[str, list[str]] = {}
        right = 0
        for s in sets:
            if s.ended is not None and s.status is JobSetStatus.DONE:
                problems = check_results(s)
                if problems:
                    wrong[s.id] = problems
                elif s not in hung:
                    right += 1
        posts = {t: n for t, n in stats.get("posts_by_tag", {}).items() if ATTEMPT_TAG.match(t)}
        dups = {t: n for t, n in posts.items() if n != 1}
        # Time from the last fault a set lived through to its end, against grace + tick + poll
        # cap + its remaining work (at most a whole set under the same load, from the warm-up).
        gaps = []
        for s in sets:
            if s.ended is None:
                continue
            touched = [f for f in chaos.faults if f.start < s.ended and (f.restored or s.ended) > s.created]
            if touched:
                last = max(min(f.restored or s.ended, s.ended) for f in touched)
                allowed = fixed_bound + allowance.get(s.backend, 0.0)
                gaps.append((s.ended - last, allowed, s))
        over = [(g, a, s) for g, a, s in gaps if g > a]
        worst = max(gaps, key=lambda x: x[0], default=None)

        by_kind = Table(title=f"faults injected (seed {SEED})")
        by_kind.add_column("kind")
        by_kind.add_column("count", justify="right")
        for kind in KINDS:
            by_kind.add_row(kind, str(sum(1 for f in chaos.faults if f.kind == kind)))
        by_kind.add_row("[dim]worker exits on their own (restarted)[/]", str(chaos.counts["worker exited by itself"]))
        by_kind.add_row("[dim]worker restarts in all[/]", str(chaos.counts["worker restarts"]))
        by_kind.add_row("[dim]run() refused (Redis down), not started[/]", str(chaos.counts["run() refused"]))
        by_kind.add_row("[dim]storm answers 429 / 503[/]", f"{storms.get(429, 0)} / {storms.get(503, 0)}")
        by_kind.add_row("[dim]steps re-sent by the reconciler[/]",
                        ", ".join(f"{k} {v}" for k, v in sorted(resent.items())) or "0")
        console.print(by_kind)

        score = Table(title="job sets")
        score.add_column("measure")
        score.add_column("value", justify="right")
        score.add_column("goal", justify="right")
        backends = Counter(s.backend for s in sets)
        score.add_row("sets started", f"{len(sets)} (" + ", ".join(f"{b} {n}" for b, n in sorted(backends.items())) + ")", "")
        score.add_row("DONE with right results", str(right), str(len(sets)))
        score.add_row("hung (not final within grace + 120 s)", str(len(hung)), "0")
        score.add_row("final but not DONE (ERROR/CANCELLED)", str(len(failed)), "0")
        score.add_row("wrong results (sets)", str(len(wrong)), "0")
        score.add_row("duplicate posts within an attempt", f"{len(dups)} of {len(posts)} attempt tags", "0")
        if worst:
            g, a, s = worst
            score.add_row("longest last fault (restored) -> set end", f"{g:.1f} s ({s.backend}, {s.id[:12]})", f"<= {a:.1f} s")
        score.add_row("sets over their bound", f"{len(over)} of {len(gaps)} hit by faults", "0")
        score.add_row("documented bound", f"grace {GRACE:g} + tick {tick:g} + poll cap {cfg.poll_cap:g} = "
                      f"{fixed_bound:g} s + remaining work", "")
        score.add_row("remaining-work allowance (warm-up)",
                      ", ".join(f"{b} {t:.1f} s" for b, t in sorted(allowance.items())), "")
        console.print(score)
        console.print("[dim]link_cut is SIGSTOP/SIGCONT of a worker's process group on this machine, not a true "
                      "network cut: tests/test_hosts.py cuts a worker host's network for real. Times are measured "
                      "from when a fault was restored (Redis answering, worker thawed or replacement ready, "
                      "storm over).[/]")

        bad = {s.id for s in hung + failed} | set(wrong) | {t.split(":")[1] for t in dups} | {s.id for _, _, s in over}
        if bad:
            console.rule("[red]evidence[/]")
            for f in chaos.faults:
                console.print(f"  fault {f.kind:15} at {f.start - T0:7.1f}s restored "
                              f"{(f.restored - T0) if f.restored else float('nan'):7.1f}s  {f.detail}")
            for sid in sorted(bad):
                found = next((x for x in sets if x.id == sid), None)
                if found is None:
                    console.print(f"[bold]set {sid}[/] (a warm-up set)")
                else:
                    ended = f"{found.ended - T0:.1f}s" if found.ended else "never"
                    console.print(f"[bold]set {sid}[/] {found.backend} status {found.status.value} "
                                  f"created {found.created - T0:.1f}s ended {ended}")
                for line in wrong.get(sid, [])[:5]:
                    console.print(f"  wrong: {line}", markup=False)
                for t, n in dups.items():
                    if t.split(":")[1] == sid:
                        console.print(f"  tag {t}: {n} posts", markup=False)
                if found is not None and (found in hung or found in failed):
                    try:
                        console.print(found.js.report(), markup=False)
                    except Exception as exc:  # noqa: BLE001 - the report is a courtesy
                        console.print(f"  (no report: {exc})", markup=False)
                for line in evidence(chaos, sid):
                    console.print(f"  {line}", markup=False)
            console.print("worker logs: " + " ".join(w.log for w in chaos.all_workers), markup=False)
        ok = not (hung or failed or wrong or dups or over) and right == len(sets)
        chaos.keep_logs = not ok
        console.print(f"[bold {'green' if ok else 'red'}]{'goals hold' if ok else 'goals NOT met'}[/] "
                      f"(replay with CHAOS_SEED={SEED} CHAOS_SECONDS={SECONDS:g})")
        return 0 if ok else 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping everything this run started[/]")
        return 130
    finally:
        chaos.close()
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
