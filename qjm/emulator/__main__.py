"""``python -m qjm.emulator`` (and ``qjm emulator``): run the IBM Quantum Platform emulator in the foreground."""

from __future__ import annotations

import argparse
import logging

from . import faults
from .server import serve


def build_parser(prog: str = "python -m qjm.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Emulate the IBM Quantum Platform REST API locally.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    faults.add_arguments(parser)
    parser.add_argument("--simulate-in-process", action="store_true",
                        help="simulate jobs in the server's own process (it then answers late while one simulates)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m qjm.emulator") -> None:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        knobs = faults.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    from .devices import DeviceCatalog

    unknown = knobs.unknown_devices(DeviceCatalog().names())
    if unknown:
        parser.error(f"no such device: {', '.join(unknown)} (the emulator offers ibm_<name> for each fake backend)")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    serve(args.host, args.port, knobs, simulate_apart=not args.simulate_in_process)


if __name__ == "__main__":
    main()
