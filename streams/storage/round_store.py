"""The workers' Redis store: load what a batch needs in one round trip, persist its delta in one
atomic script together with the partition's fence and outbox.

Correctness rests on the fence, not on Kafka's committed offsets: every partition assignment
takes a new token, and the script refuses a caller whose token is not the current one, and a
batch at or below the last applied offset. Outputs (events, rejections) are written to the
partition's outbox in the same step and dropped only after Kafka acknowledged them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from schemas.exceptions import AlreadyApplied, Fenced
from streams.engine.state import Held, Loaded, PartKey, PartMeta, StateDelta, StateNeeds, ValueKey
from streams.engine.state_cache import StateCache
from streams.storage.batching import CommandBatcher
from streams.storage.codec import decode_held, decode_meta, encode_held, split_field
from streams.storage.layout import TYPE_FIELD_PREFIX, VERSION_FIELD, Keys, value_field

DEDUPE_WINDOW = 10_000
# A part's values hash of at most this many fields is read whole the first time a round needs
# any of its values: the cache then knows every absent value of that part as well, and later
# rounds need no read for it (a new identity's first change is the common case). Larger ones
# are read a field at a time, so one read stays short.
WHOLE_PART_FIELDS = 10_000
_VERSION = VERSION_FIELD.decode()
_TYPE_PREFIX = TYPE_FIELD_PREFIX.decode()

_TAKE = """
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
local offset = redis.call('HGET', KEYS[1], 'offset') or '-1'
return {token, offset, redis.call('LRANGE', KEYS[2], 0, -1)}
"""


def _lua(name: str) -> str:
    return (resources.files("streams") / "lua" / name).read_text()


class MetaView(Protocol):
    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        """A part's meta as it was before the writes being persisted."""


@dataclass(slots=True)
class Assignment:
    """This worker's hold on one input partition."""

    topic: str
    partition: int
    token: int
    applied: int  # last applied offset; -1 before the first
    pending: list[bytes]  # outbox entries persisted by an earlier holder, not yet acknowledged
    # Entries at the head of the outbox that Kafka acknowledged: the next persist trims them.
    acked: int = 0


@dataclass(slots=True)
class PartitionWrite:
    """One partition's part of a round: its records' offsets and its new outbox entry."""

    assignment: Assignment
    first: int
    last: int
    outbox: bytes  # b"" when the round gave this partition no output


class RedisStateStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, window: int = DEDUPE_WINDOW,
                 whole_part_fields: int = WHOLE_PART_FIELDS) -> None:
        self.client = client
        self.keys = keys
        self.window = window
        self.whole_part_fields = whole_part_fields
        self._take = client.register_script(_TAKE)
        self._apply = client.register_script(_lua("apply_round.lua"))
        self._read = client.register_script(_lua("read_state.lua"))
        self.batcher = CommandBatcher(client)
        self._ack = client.register_script(_lua("ack_outbox.lua"))

    async def take(self, topic: str, partition: int) -> Assignment:
        """Take the partition: a new token fences every earlier holder."""
        token, applied, pending = await self._take(
            keys=[self.keys.fence(topic, partition), self.keys.outbox(topic, partition)])
        return Assignment(topic, partition, int(token), int(applied), list(pending))

    async def read(self, needs: StateNeeds) -> Loaded:
        """What Redis holds for `needs`, in one round trip (none when nothing is needed): the
        parts' metas, the values (None for an absent one), each message's whole dedupe memory,
        oldest first, and the parts whose values hash was small enough to be read whole (every
        value of theirs is then in `held`: one it lacks is absent)."""
        parts = list(needs.parts)
        by_part: dict[PartKey, list[ValueKey]] = defaultdict(list)
        for key in needs.values:
            by_part[key[:2]].append(key)
        value_parts = list(by_part.items())
        messages = list({message_id for message_id, _ in needs.response_ids})
        if not (parts or value_parts or messages):
            return Loaded({}, {}, {}, set())
        keys = self.keys
        # One script call: a pipeline of a command per part and message cost the worker more
        # (building and parsing each command) than Redis spent answering them.
        state_keys = [keys.meta(message_id, part_id) for message_id, part_id in parts]
        state_keys += [keys.values(message_id, part_id) for (message_id, part_id), _ in value_parts]
        state_keys += [keys.seen(message_id) for message_id in messages]
        args: list[bytes | int] = [len(parts), len(value_parts), len(messages), self.whole_part_fields]
        args += [len(vkeys) for _, vkeys in value_parts]
        for _, vkeys in value_parts:
            args += [value_field(k[2], k[3]) for k in vkeys]
        raw_metas, raw_values, raw_ids, raw_whole = await self.read_script(state_keys, args)
        metas = {part: decode_meta(dict(zip(raw[::2], raw[1::2], strict=True)))
                 for part, raw in zip(parts, raw_metas, strict=True)}
        held: dict[ValueKey, Held | None] = {}
        whole: set[PartKey] = set()
        for (part, vkeys), raw, is_whole in zip(value_parts, raw_values, raw_whole, strict=True):
            if is_whole:
                whole.add(part)
                message_id, part_id = part
                for field, value in zip(raw[::2], raw[1::2], strict=True):
                    name, identity = split_field(field)
                    held[message_id, part_id, name, identity.decode()] = decode_held(value)
                # Every value asked for has its answer, as in a read field by field.
                for key in vkeys:
                    held.setdefault(key, None)
            else:
                for key, value in zip(vkeys, raw, strict=True):
                    held[key] = None if value is None else decode_held(value)
        seen = {message_id: [rid.decode() for rid in ids]
                for message_id, ids in zip(messages, raw_ids, strict=True)}
        return Loaded(metas, held, seen, whole)

    async def read_script(self, keys: Sequence[str], args: Sequence[bytes | int]) -> Any:
        """The read script's reply (streams/lua/read_state.lua) to these KEYS and ARGV, as
        `read` makes them, or a decider (`ReadScript`)."""
        sha = self._read.sha
        (reply,) = await self.batcher.run(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args), 1)
        if isinstance(reply, NoScriptError):
            # Redis lost its scripts (a restart, SCRIPT FLUSH): this once, the script itself.
            return await self._read(keys=keys, args=args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def load(self, needs: StateNeeds, cache: StateCache | None = None) -> StateCache:
        """Read what `needs` names and the cache does not know; returns the cache, now a view
        of everything those needs read."""
        cache = StateCache() if cache is None else cache
        cache.loaded(*await self.read(cache.missing(needs)))
        return cache

    async def persist(self, parts: Sequence[PartitionWrite], delta: StateDelta, before: MetaView,
                      made: tuple[list[str], bytes] | None = None) -> None:
        """Write a round's decisions, each partition's outbox entry and new fence offset, in one
        atomic script; first drop each partition's `acked` outbox entries Kafka already has.

        Every partition's token and fence are checked before anything is written: Fenced or
        AlreadyApplied names the first partition that refused, and then nothing was written.
        `before` gives the metas the round was decided on, so that only what changed is written.
        `made`: the writes already made by the decider, (state keys, JSON array), key indexes
        counted after the partitions' keys; then `delta` and `before` are not read.
        """
        keys: list[str] = []
        args: list[bytes | int | str] = [len(parts)]
        for part in parts:
            assignment = part.assignment
            keys.append(self.keys.fence(assignment.topic, assignment.partition))
            keys.append(self.keys.outbox(assignment.topic, assignment.partition))
            args += (assignment.token, part.first, part.last, assignment.acked, part.outbox)
        if made is None:
            args.append(orjson.dumps(self._writes(keys, delta, before)))
        else:
            keys += made[0]
            args.append(made[1])
        sha = self._apply.sha
        (reply,) = await self.batcher.run(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args), 1)
        if isinstance(reply, NoScriptError):
            # Redis lost its scripts (a restart, SCRIPT FLUSH): this once, the script itself.
            try:
                await self._apply(keys=keys, args=args)
            except ResponseError as exc:
                _raise_fence_error(exc, parts)
                raise
        elif isinstance(reply, Exception):
            if isinstance(reply, ResponseError):
                _raise_fence_error(reply, parts)
            raise reply
        for part in parts:
            part.assignment.applied = part.last
            part.assignment.acked = 0

    def _writes(self, keys: list[str], delta: StateDelta, before: MetaView) -> list[str | int]:
        """The delta as the script's groups of four, adding the state keys to `keys`."""
        index: dict[str, int] = {}

        def at(key: str) -> int:
            found = index.get(key)
            if found is None:
                keys.append(key)
                found = index[key] = len(keys)
            return found

        # One JSON argument instead of four per write: packing hundreds of arguments was the
        # larger part of this call's cost. Every field and value is UTF-8 (names, ids, JSON).
        ops: list[str | int] = []
        add = ops.extend
        for (message_id, part_id), meta in delta.parts.items():
            old = before.part_meta(message_id, part_id)
            k = at(self.keys.meta(message_id, part_id))
            if meta.version != old.version:
                add(("H", k, _VERSION, str(meta.version)))
            for name, kind in meta.types.items():
                if name not in old.types:
                    add(("H", k, _TYPE_PREFIX + name, kind))
        for (message_id, part_id, name, identity), held in delta.values.items():
            k = at(self.keys.values(message_id, part_id))
            if held is None:
                add(("D", k, f"{name}\0{identity}", ""))
            else:
                add(("H", k, f"{name}\0{identity}", encode_held(held).decode()))
        for (message_id, part_id, name, encoded), change in delta.tallies.items():
            add(("I", at(self.keys.tally(message_id, part_id)), f"{name}\0{encoded.decode()}",
                 str(change)))
        trimmed: set[str] = set()
        for message_id, response_id in delta.taken:
            k = at(self.keys.seen(message_id))
            add(("L", k, response_id, ""))
            trimmed.add(message_id)
        window = str(self.window)
        for message_id in trimmed:
            add(("T", at(self.keys.seen(message_id)), "", window))
        return ops

    async def ack(self, assignment: Assignment, count: int) -> None:
        """Drop the first `count` outbox entries: Kafka has them."""
        if count == 0:
            return
        try:
            await self._ack(keys=[self.keys.fence(assignment.topic, assignment.partition),
                                  self.keys.outbox(assignment.topic, assignment.partition)],
                            args=[assignment.token, count])
        except ResponseError as exc:
            _raise_fence_error(exc)
            raise


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
