"""What a round asks of the store that holds msgstate's state: the `RoundStore` protocol.

A round goes: take the partitions (a new token each, fencing every earlier holder), read what
the decider's cache lacks, persist the decisions together with each partition's fence and
outbox entry in one atomic step, and acknowledge the outbox entries Kafka has.

Reads and writes are in the store's own shape, which every decider makes: a read names the
parts' metas, value hashes and dedupe memories to read, with the read script's arguments
(streams/lua/read_state.lua); the writes are one JSON array of groups of four (op, key index,
field, value) over state keys named by `KeyRef` (streams/lua/apply_round.lua). Two stores
implement it: `RedisRoundStore` (streams/storage/redis_round_store.py) and `MemoryRoundStore`
(streams/storage/memory.py), which the processor's unit tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from msgstate.streams.engine.state import PartKey
from msgstate.streams.storage.layout import KeyRef, Keys


@dataclass(slots=True)
class Assignment:
    """This worker's hold on one input partition."""

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


@dataclass(frozen=True, slots=True)
class Read:
    """What a round reads that the decider's cache does not hold, in the read script's order:
    the parts' metas, the parts' value hashes, the messages' dedupe memories; `args`: the
    script's ARGV (counts, the most fields of a hash read whole, each hash's fields asked)."""

    parts: list[PartKey]
    value_parts: list[PartKey]
    messages: list[str]
    args: list[bytes | int]
    # v1.1 (the args then go on with their counts and `fields`' fields): hashes read whole,
    # hashes read one field each.
    hashes: list[KeyRef] = field(default_factory=list)
    fields: list[KeyRef] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Writes:
    """A round's state writes: the state keys, and the JSON array of groups of four whose key
    indexes count from 1 in `keys`."""

    keys: list[KeyRef] = field(default_factory=list)
    ops: bytes = b"[]"


# Response ids a persist dropped from dedupe memories (T writes): (key index in `Writes.keys`,
# counting from 1; the ids, oldest first).
Evicted = list[tuple[int, list[bytes]]]

# The input partition of each record key of a round (a message's id): a message's state lives
# in the keys of the partition its records arrive on.
Home = Mapping[bytes | None, int]


def partition_finder(keys: Keys, home: Home) -> Callable[[str], int]:
    """A message's partition in a round: its records' (their key is its id), or, for a message
    no record was keyed by, the one its id is keyed to."""
    partition_of = keys.partition_of

    def where(message_id: str) -> int:
        if not message_id:
            # A partition's own key (an identity's index, the erasure ids): the round's only
            # partition.
            partitions = set(home.values())
            if len(partitions) != 1:
                raise ValueError(f"a partition's own key in a round of partitions {partitions}")
            return partitions.pop()
        found = home.get(message_id.encode())
        return partition_of(message_id) if found is None else found

    return where


class RoundStore(Protocol):
    """The state, fences and outboxes of a worker's partitions."""

    keys: Keys
    # Whether one atomic step may span partitions (False on Redis Cluster: a round is then one
    # partition, one slot).
    cross_partition: bool

    async def take(self, partition: int) -> Assignment:
        """Take the partition: a new token fences every earlier holder; returns the fence's
        last applied offset and the outbox entries left."""

    async def read(self, read: Read, home: Home) -> Any:
        """The read script's reply: [metas, values, ids, whole], and [hashes, fields] when
        the read asks for them (streams/lua/read_state.lua)."""

    async def persist(self, parts: Sequence[PartitionWrite], writes: Writes, home: Home) -> Evicted:
        """In one atomic step: check every partition's token and fence (Fenced, AlreadyApplied
        or StoreBehind names the first that refused, and then nothing was written), drop each
        partition's `acked` outbox entries, append its outbox entry, move its fence to `last`,
        and apply the writes. On success each assignment's `applied` is `last` and `acked` is
        0; returns the response ids the writes dropped from dedupe memories."""

    async def ack(self, assignment: Assignment, count: int) -> None:
        """Drop the first `count` outbox entries of the partition: Kafka has them."""


# A part's values hash of at most this many fields is read whole the first time a round needs
# any of its values: the cache then knows every absent value of that part as well, and later
# rounds need no read for it (a new identity's first change is the common case). Larger ones
# are read a field at a time, so one read stays short.
WHOLE_PART_FIELDS = 10_000
