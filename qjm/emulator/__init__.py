"""Local emulator of the IBM Quantum Platform REST API (see ``server`` for what and why)."""

from .server import DEFAULT_INSTANCE, Emulator, serve

__all__ = ["DEFAULT_INSTANCE", "Emulator", "serve"]
