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
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from msgstate.schemas.exceptions import AlreadyApplied, Fenced
from msgstate.streams.storage.batching import CommandBatcher
from msgstate.streams.storage.layout import META as META_KIND
from msgstate.streams.storage.layout import SEEN, VALUES, Keys
from msgstate.streams.storage.protocol import Assignment, PartitionWrite, Read, Writes
from msgstate.streams.storage.scripts import lua


class RedisRoundStore:
    """The `RoundStore` on Redis (streams/storage/protocol.py)."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._take = client.register_script(lua("take_partition.lua"))
        self._apply = client.register_script(lua("apply_round.lua"))
        self._read = client.register_script(lua("read_state.lua"))
        self._ack = client.register_script(lua("ack_outbox.lua"))
        # The partitions of a fetch reach their Redis steps together: one pipeline for them.
        self.batcher = CommandBatcher(client)

    async def take(self, topic: str, partition: int) -> Assignment:
        token, applied, pending = await self._take(
            keys=[self.keys.fence(topic, partition), self.keys.outbox(topic, partition)])
        return Assignment(topic, partition, int(token), int(applied), list(pending))

    async def read(self, read: Read) -> Any:
        state = self.keys.state
        keys = [state((META_KIND, *part)) for part in read.parts]
        keys += [state((VALUES, *part)) for part in read.value_parts]
        keys += [state((SEEN, message_id, "")) for message_id in read.messages]
        return await self._run(self._read, keys, read.args)

    async def persist(self, parts: Sequence[PartitionWrite], writes: Writes) -> None:
        keys: list[str] = []
        args: list[bytes | int | str] = [len(parts)]
        for part in parts:
            assignment = part.assignment
            keys.append(self.keys.fence(assignment.topic, assignment.partition))
            keys.append(self.keys.outbox(assignment.topic, assignment.partition))
            args += (assignment.token, part.first, part.last, assignment.acked, part.outbox)
        state = self.keys.state
        keys += [state(ref) for ref in writes.keys]
        args.append(writes.ops)
        try:
            await self._run(self._apply, keys, args)
        except ResponseError as exc:
            _raise_fence_error(exc, parts)
            raise
        for part in parts:
            part.assignment.applied = part.last
            part.assignment.acked = 0

    async def ack(self, assignment: Assignment, count: int) -> None:
        if count == 0:
            return
        try:
            await self._ack(keys=[self.keys.fence(assignment.topic, assignment.partition),
                                  self.keys.outbox(assignment.topic, assignment.partition)],
                            args=[assignment.token, count])
        except ResponseError as exc:
            _raise_fence_error(exc)
            raise

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply, through the batcher (one pipeline with the other partitions'
        calls of this event-loop turn)."""
        sha = script.sha
        (reply,) = await self.batcher.run(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args), 1)
        if isinstance(reply, NoScriptError):
            # Redis lost its scripts (a restart, SCRIPT FLUSH): this once, the script itself.
            return await script(keys=keys, args=args)
        if isinstance(reply, Exception):
            raise reply
        return reply


def _raise_fence_error(exc: ResponseError, parts: Sequence[PartitionWrite] = ()) -> None:
    """Fenced or AlreadyApplied for a script's refusal, naming the partition that refused."""
    text = str(exc)
    kind, _, rest = text.partition(" ")
    if kind not in ("FENCED", "REAPPLY"):
        return
    position, _, _ = rest.partition(" ")
    partition = None
    if position.isdigit() and 0 < int(position) <= len(parts):
        partition = parts[int(position) - 1].assignment.partition
    if kind == "FENCED":
        raise Fenced(text, partition) from exc
    raise AlreadyApplied(text, partition) from exc
