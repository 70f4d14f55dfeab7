"""Test processes are qjm's own (``qjm.cluster``): a private redis-server and real Celery workers."""

from qjm.cluster import ROOT, free_port, process_env, wait_for
from qjm.cluster import RedisProcess as RedisServer
from qjm.cluster import WorkerProcess as Worker

worker_env = process_env

__all__ = ["ROOT", "RedisServer", "Worker", "free_port", "worker_env", "wait_for"]
