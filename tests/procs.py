"""Test processes are qjm's own (``qjm.cluster``): a private redis-server and real Celery workers."""

from qjm.cluster import ROOT, RedisProcess as RedisServer, WorkerProcess as Worker, free_port, process_env, wait_for

worker_env = process_env

__all__ = ["ROOT", "RedisServer", "Worker", "free_port", "worker_env", "wait_for"]
