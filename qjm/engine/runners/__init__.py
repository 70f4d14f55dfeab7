"""How a transpiled job runs to its end: ``LocalRunner`` simulates it inside the worker,
``RemoteRunner`` posts it to a service and follows it there. The pipeline only picks one."""

from .base import JobRunner
from .local import LocalRunner
from .remote import RemoteRunner

__all__ = ["JobRunner", "LocalRunner", "RemoteRunner"]
