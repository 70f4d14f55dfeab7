"""``python -m qjm.emulator``: run the IBM Quantum Platform emulator in the foreground."""

from __future__ import annotations

import argparse
import logging

from .server import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qjm.emulator", description="Emulate the IBM Quantum Platform REST API locally.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--job-seconds", type=float, default=5.0, help="time each job waits in the queue")
    parser.add_argument("--pending-limit", type=int, default=None, help="refuse submits beyond N queued/running jobs (code 3458)")
    parser.add_argument("--fail-every", type=int, default=0, help="make every K-th job fail")
    parser.add_argument("--throttle", type=float, default=0.0, help="answer this fraction (0..1) of API requests with 429")
    parser.add_argument("--server-errors", type=float, default=0.0, help="answer this fraction (0..1) of API requests with 503")
    parser.add_argument("--seed", type=int, default=None, help="seed the fault injection, for repeatable runs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    serve(args.host, args.port, args.job_seconds, args.pending_limit, args.fail_every, args.throttle, args.server_errors,
          seed=args.seed)


if __name__ == "__main__":
    main()
