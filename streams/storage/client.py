"""Redis clients: of one Redis, or of a Redis Cluster (MSGSTATE_REDIS_CLUSTER).

A single Redis's asyncio client packs its commands with hiredis (C) instead of Python: redis-py
packs every command in Python even when hiredis parses the replies, and for the worker's
persist script (tens of arguments, one large) that took 45 µs a call against hiredis's 10 µs.
The replies and everything else are redis-py's own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.cluster
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
    nodes `url` names (one URL, or several separated by commas, so that a client can start
    while one of them is down); the cluster client follows MOVED and ASK and finds the others."""
    if cluster:
        first, *more = url.split(",")
        nodes = [aioredis.cluster.ClusterNode(*_host_port(u)) for u in more]
        return aioredis.RedisCluster.from_url(first, startup_nodes=nodes or None, **options)
    return packed_client(url, **options)


def sync_client(url: str, *, cluster: bool = False, **options: Any) -> SyncRedis:
    """The same, blocking."""
    if cluster:
        first, *more = url.split(",")
        nodes = [redis.cluster.ClusterNode(*_host_port(u)) for u in more]  # type: ignore[no-untyped-call]
        return redis.RedisCluster.from_url(first, startup_nodes=nodes or None, **options)
    return redis.Redis.from_url(url, **options)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url.strip())
    return parts.hostname or "127.0.0.1", parts.port or 6379
