"""Local emulator of the IBM Quantum Platform REST API (see ``server`` for what and why)."""

from .faults import Faults
from .server import DEFAULT_INSTANCE, Emulator, serve

__all__ = ["DEFAULT_INSTANCE", "Emulator", "Faults", "serve"]
