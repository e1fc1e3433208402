"""Redis clients: of one Redis, or of a Redis Cluster (MSGSTATE_REDIS_CLUSTER).

A single Redis's asyncio client packs its commands with hiredis (C) instead of Python: redis-py
packs every command in Python even when hiredis parses the replies, and for the worker's
persist script (tens of arguments, one large) that took 45 µs a call against hiredis's 10 µs.
The replies and everything else are redis-py's own.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection


class _PackedByHiredis:
    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py: a command name with spaces ("CONFIG GET") goes as several arguments.
        first = args[0]
        if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class PackedConnection(_PackedByHiredis, Connection):
    pass


class PackedSSLConnection(_PackedByHiredis, SSLConnection):
    pass


_PACKED: dict[type[Any], type[Any]] = {Connection: PackedConnection, SSLConnection: PackedSSLConnection}


def packed_client(url: str, **options: Any) -> aioredis.Redis:
    """`redis.asyncio.from_url`, packing with hiredis over TCP and TLS (a Unix socket keeps
    redis-py's own packing)."""
    client = aioredis.from_url(url, **options)
    pool = client.connection_pool
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return client


# A client of one Redis or of a Redis Cluster: msgstate's keys work on either.
SyncRedis = redis.Redis | redis.RedisCluster
AsyncRedis = aioredis.Redis | aioredis.RedisCluster


def async_client(url: str, *, cluster: bool = False, **options: Any) -> AsyncRedis:
    """An asyncio client of a single Redis (packing with hiredis) or of a Redis Cluster, whose
    node `url` names; the cluster client follows MOVED and ASK and finds the other nodes."""
    if cluster:
        return aioredis.RedisCluster.from_url(url, **options)
    return packed_client(url, **options)


def sync_client(url: str, *, cluster: bool = False, **options: Any) -> SyncRedis:
    """The same, blocking."""
    if cluster:
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)
