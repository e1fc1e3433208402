"""The Redis processes a store runs on (one server, or a cluster's masters and their replicas),
and what one deployment's keys hold on each master.

A node's CPU is read by its pid; the memory the keys under a prefix hold on a master is its
`used_memory` before and after they are deleted, once its replicas have applied the deletes
(so that no replication buffer is counted), which leaves out what the workload does not leave
behind: client buffers, the replication backlog, scripts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import redis

from msgstate.bench.procs import listening_pid
from msgstate.schemas.exceptions import ConfigError
from msgstate.streams.storage.layout import Keys
from msgstate.workers.config import Settings, redis_port
from msgstate.workers.tools import stack as local_stack

CHUNK = 1000  # keys deleted per pipeline
WAIT_MS = 10_000  # for a master's replicas to apply its deletes


@dataclass(frozen=True, slots=True)
class Node:
    """One Redis process of a store."""

    port: int
    host: str = "127.0.0.1"
    cluster: bool = False
    master: int | None = None  # the port of the master it replicates; None for a master
    slots: tuple[tuple[int, int], ...] = ()  # the slot ranges a cluster master serves
    pid: int | None = None

    @property
    def name(self) -> str:
        """Its key in a drain's CPU times: "redis" for a single server, else role and port."""
        if not self.cluster:
            return "redis"
        return f"master:{self.port}" if self.master is None else f"replica:{self.port}"


@dataclass(frozen=True, slots=True)
class ShardLoad:
    """What one deployment's keys hold on one master."""

    node: str
    partitions: int  # input partitions whose slot it serves
    keys: int
    used_memory: int  # bytes freed on it when those keys were deleted


def parse_cluster_nodes(text: str) -> list[Node]:
    """The nodes of CLUSTER NODES output (no pids), masters first, each in port order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    ports = {fields[0]: int(fields[1].split("@")[0].rpartition(":")[2]) for fields in lines}
    found = []
    for fields in lines:
        flags = fields[2].split(",")
        if "noaddr" in flags or "handshake" in flags:
            continue
        host = fields[1].split("@")[0].rpartition(":")[0] or "127.0.0.1"
        slots = tuple(_slot_range(s) for s in fields[8:] if not s.startswith("["))
        master = ports.get(fields[3]) if "slave" in flags else None
        found.append(Node(ports[fields[0]], host, True, master, slots))
    return sorted(found, key=lambda n: (n.master is not None, n.port))


def _slot_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def nodes(settings: Settings) -> list[Node]:
    """The Redis processes of the store `settings` names, with their pids (from the local
    stack's pid files, else the process listening on the port)."""
    if not settings.redis_cluster:
        service = local_stack.redis_service(settings)
        return [Node(redis_port(settings.redis), pid=service.pid() or listening_pid(service.ports[0]))]
    client = redis.Redis.from_url(settings.redis.split(",")[0], socket_timeout=5)
    try:
        raw = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        raise ConfigError(f"the Redis at {settings.redis} is not a cluster node: {exc}") from None
    finally:
        client.close()
    known = {node.ports[0]: node.pid() for node in local_stack.cluster_nodes(settings)}
    found = [replace(n, master=_master_of(n), pid=known.get(n.port) or listening_pid(n.port))
             for n in parse_cluster_nodes(raw.decode() if isinstance(raw, bytes) else str(raw))]
    return sorted(found, key=lambda n: (n.master is not None, n.port))


def _master_of(node: Node) -> int | None:
    """The port of the master a node replicates, as the node itself says: another node's view
    lags a new replica's by a gossip round or more."""
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    with contextlib.closing(client):
        info = client.info("replication")
    return int(info["master_port"]) if info.get("role") == "slave" else None


def partitions_on(master: Node, keys: Keys) -> int:
    """How many of the input partitions have their slot on this master (all, for a single
    server)."""
    if not master.cluster:
        return keys.partitions
    return sum(1 for _, _, slot in keys.slot_map() if any(lo <= slot <= hi for lo, hi in master.slots))


def cpu_by_node(found: Sequence[Node], cpu_of: Callable[[int | None], float]) -> dict[str, float]:
    """CPU seconds of each node so far, and "redis": the masters' total (replicas apart)."""
    times = {node.name: cpu_of(node.pid) for node in found}
    if "redis" not in times:
        times["redis"] = sum(t for node, t in zip(found, times.values(), strict=True) if node.master is None)
    return times


def _client(settings: Settings, node: Node) -> redis.Redis:
    if settings.redis_cluster:
        return redis.Redis(host=node.host, port=node.port, socket_timeout=30)
    return redis.Redis.from_url(settings.redis, socket_timeout=30)


def release(settings: Settings, found: Sequence[Node], prefix: str) -> list[ShardLoad]:
    """Delete the keys under `prefix` master by master; what each held (keys, used_memory)."""
    loads = []
    keys = settings.keys
    for master in (n for n in found if n.master is None):
        replicas = sum(1 for n in found if n.master == master.port)
        client = _client(settings, master)
        with contextlib.closing(client):
            before = int(client.info("memory")["used_memory"])
            count = _delete(client, list(client.scan_iter(match=f"{prefix}:*", count=5000)), replicas)
            after = int(client.info("memory")["used_memory"])
        loads.append(ShardLoad(master.name, partitions_on(master, keys), count, before - after))
    return loads


def _delete(client: redis.Redis, found: list[bytes], replicas: int) -> int:
    """DEL every key, one by one in pipelines (keys of several slots: no multi-key DEL); the
    last pipeline WAITs for the replicas, on the connection that deleted (WAIT is per client)."""
    for at in range(0, len(found), CHUNK):
        pipe = client.pipeline(transaction=False)
        for key in found[at:at + CHUNK]:
            pipe.delete(key)
        if replicas and at + CHUNK >= len(found):
            pipe.execute_command("WAIT", replicas, WAIT_MS)  # type: ignore[no-untyped-call]
        pipe.execute()
    return len(found)
