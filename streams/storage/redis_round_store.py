"""The workers' Redis store: a round's read in one script call, its writes in one atomic script
together with each partition's fence and outbox.

Correctness rests on the fence, not on Kafka's committed offsets: every partition assignment
takes a new token, and the script refuses a caller whose token is not the current one, and a
round at or below the last applied offset. Outputs (events, rejections) are written to the
partition's outbox in the same step and dropped only after Kafka acknowledged them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

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


class RedisRoundStore:
    """The `RoundStore` on Redis (streams/storage/protocol.py)."""

    def __init__(self, client: AsyncRedis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        # On a cluster a round is one partition: its keys are one slot.
        self.cross_partition = not isinstance(client, aioredis.RedisCluster)
        self._take = client.register_script(lua("take_partition.lua"))
        self._apply = client.register_script(lua("apply_round.lua"))
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
            evicted = await self._apply(keys=keys, args=args)
        except ResponseError as exc:
            _raise_fence_error(exc, parts)
            raise
        for part in parts:
            part.assignment.applied = part.last
            part.assignment.acked = 0
        return [(int(k), list(ids)) for k, ids in evicted]

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
