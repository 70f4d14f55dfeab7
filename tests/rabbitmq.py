"""A private virtual host on the machine's RabbitMQ, per test module: queues, exchanges and
unacknowledged messages of one module never meet another's, so modules run side by side. The
server itself is shared (the system's, or CI's service on 5672) and never stopped here."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HOST, PORT, USER, PASSWORD = "127.0.0.1", 5672, "guest", "guest"


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@contextmanager
def private_vhost() -> Iterator[str]:
    """A fresh vhost that guest may use, deleted afterwards; yields its ``amqp://`` broker URL."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("RabbitMQ is not installed here (Debian: apt-get install rabbitmq-server)")
    name = f"qjm-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, USER, ".*", ".*", ".*")
        yield f"amqp://{USER}:{PASSWORD}@{HOST}:{PORT}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def queue_depths(url: str) -> dict[str, tuple[int, int]]:
    """Queue -> (ready, unacknowledged) messages in the broker URL's vhost, as RabbitMQ counts them."""
    out = rabbitmqctl("list_queues", "-p", vhost_of(url), "--no-table-headers", "name", "messages_ready",
                      "messages_unacknowledged")
    depths = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths
