"""The workers' Redis store: a round's read in one script call, its writes in one atomic script
together with each partition's fence and outbox.

Correctness rests on the fence, not on Kafka's committed offsets: every partition assignment
takes a new token, and the script refuses a caller whose token is not the current one, and a
round at or below the last applied offset. Outputs (events, rejections) are written to the
partition's outbox in the same step and dropped only after Kafka acknowledged them.

Optionally (`wait_replicas`) the store waits after each round's script until that many replicas
of the master that ran it hold the round (Redis's WAIT), so that a failover does not lose it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from msgstate.schemas.exceptions import AlreadyApplied, Fenced, StoreBehind
from msgstate.streams.storage.client import AsyncRedis
from msgstate.streams.storage.layout import META as META_KIND
from msgstate.streams.storage.layout import SEEN, VALUES, Keys
from msgstate.streams.storage.protocol import (
    Assignment,
    Evicted,
    Home,
    PartitionWrite,
    Read,
    Writes,
    partition_finder,
)
from msgstate.streams.storage.scripts import lua

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """After each round: WAIT until `replicas` replicas hold it, or `timeout_ms` passed."""

    replicas: int = 0  # 0: no wait
    timeout_ms: int = 100


class RedisRoundStore:
    """The `RoundStore` on Redis (streams/storage/protocol.py)."""

    def __init__(self, client: AsyncRedis, keys: Keys, wait: ReplicaWait = ReplicaWait()) -> None:
        self.client = client
        self.keys = keys
        self.wait = wait
        # Masters (by name) whose last wait fell short: warned of once, until their replicas
        # acknowledge again.
        self.short: set[str] = set()
        # On a cluster a round is one partition: its keys are one slot.
        self.cross_partition = not isinstance(client, aioredis.RedisCluster)
        self._take = client.register_script(lua("take_partition.lua"))
        self._apply_text = lua("apply_round.lua")
        self._apply = client.register_script(self._apply_text)
        self._read = client.register_script(lua("read_state.lua"))
        self._ack = client.register_script(lua("ack_outbox.lua"))

    async def take(self, partition: int) -> Assignment:
        token, applied, pending = await self._take(
            keys=[self.keys.fence(partition), self.keys.outbox(partition)])
        return Assignment(partition, int(token), int(applied), list(pending))

    async def read(self, read: Read, home: Home) -> Any:
        state, where = self.keys.state, partition_finder(self.keys, home)
        keys = [state((META_KIND, *part), where(part[0])) for part in read.parts]
        keys += [state((VALUES, *part), where(part[0])) for part in read.value_parts]
        keys += [state((SEEN, message_id, ""), where(message_id)) for message_id in read.messages]
        keys += [state(ref, where(ref[1])) for ref in (*read.hashes, *read.fields)]
        return await self._read(keys=keys, args=read.args)

    async def persist(self, parts: Sequence[PartitionWrite], writes: Writes, home: Home) -> Evicted:
        keys: list[str] = []
        args: list[bytes | int | str] = [len(parts)]
        for part in parts:
            assignment = part.assignment
            keys.append(self.keys.fence(assignment.partition))
            keys.append(self.keys.outbox(assignment.partition))
            args += (assignment.token, part.first, part.last, assignment.acked, part.outbox,
                     assignment.applied)
        state, where = self.keys.state, partition_finder(self.keys, home)
        keys += [state(ref, where(ref[1])) for ref in writes.keys]
        args.append(writes.ops)
        try:
            if self.wait.replicas:
                evicted = await self._apply_and_wait(keys, args)
            else:
                evicted = await self._apply(keys=keys, args=args)
        except ResponseError as exc:
            _raise_fence_error(exc, parts)
            raise
        for part in parts:
            part.assignment.applied = part.last
            part.assignment.acked = 0
        return [(int(k), list(ids)) for k, ids in evicted]

    async def _apply_and_wait(self, keys: list[str], args: list[bytes | int | str]) -> Any:
        """The round's script and a WAIT in one pipeline, so both go down the same connection
        to the master that runs the script (WAIT counts the replicas holding this connection's
        writes). Fewer replicas in time is warned about, not an error: the round is applied
        and stays so; a failover before the replicas catch up is what the fence recovers from.
        A pipeline the cluster client resends after a failover routes the WAIT by itself, so
        its count may then not be this round's: the fence covers that round all the same."""
        wait: list[Any] = ["WAIT", self.wait.replicas, self.wait.timeout_ms]
        for script in (False, True):
            pipe = self.client.pipeline(transaction=False)
            if script:  # not in this master's script cache (a promoted replica's): EVAL loads it
                pipe.eval(self._apply_text, len(keys), *keys, *args)
            else:
                pipe.evalsha(self._apply.sha, len(keys), *keys, *args)
            if isinstance(self.client, aioredis.RedisCluster):
                node = self.client.get_node_from_key(keys[0])
                master = node.name if node else ""
                pipe.execute_command(*wait, target_nodes=node)
            else:
                master = ""
                pipe.execute_command(*wait)
            applied, replicas = await pipe.execute(raise_on_error=False)
            if not isinstance(applied, NoScriptError):
                break
        if isinstance(applied, BaseException):
            raise applied
        self._count_replicas(master, replicas)
        return applied

    def _count_replicas(self, master: str, replicas: Any) -> None:
        if isinstance(replicas, int) and replicas >= self.wait.replicas:
            if master in self.short:
                log.info("replicas of %s acknowledge rounds again (%d of %d asked)", master or "Redis",
                         replicas, self.wait.replicas)
                self.short.discard(master)
        elif master not in self.short:
            self.short.add(master)
            log.warning("a round on %s was acknowledged by %s of the %d replicas asked within %d ms; going "
                        "on (warned once until they catch up): a failover now may lose the last "
                        "rounds, which the worker then applies again from the fence",
                        master or "Redis", replicas, self.wait.replicas, self.wait.timeout_ms)

    async def ack(self, assignment: Assignment, count: int) -> None:
        if count == 0:
            return
        try:
            await self._ack(keys=[self.keys.fence(assignment.partition),
                                  self.keys.outbox(assignment.partition)],
                            args=[assignment.token, count])
        except ResponseError as exc:
            _raise_fence_error(exc)
            raise


def _raise_fence_error(exc: ResponseError, parts: Sequence[PartitionWrite] = ()) -> None:
    """Fenced or AlreadyApplied for a script's refusal, naming the partition that refused."""
    text = str(exc)
    kind, _, rest = text.partition(" ")
    if kind not in ("FENCED", "REAPPLY", "BEHIND"):
        return
    position, _, _ = rest.partition(" ")
    partition = None
    if position.isdigit() and 0 < int(position) <= len(parts):
        partition = parts[int(position) - 1].assignment.partition
    if kind == "FENCED":
        raise Fenced(text, partition) from exc
    if kind == "BEHIND":
        raise StoreBehind(text, partition) from exc
    raise AlreadyApplied(text, partition) from exc
