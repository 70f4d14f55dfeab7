"""The Lua scripts of the store, each in its own file under ``scripts/`` with a header naming
every KEYS and ARGV entry; loaded once per connection pool (``redis-py`` caches by SHA)."""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return resources.files(__package__).joinpath("scripts", f"{name}.lua").read_text()


def load(r: redis.Redis, name: str) -> Script:
    return r.register_script(source(name))
