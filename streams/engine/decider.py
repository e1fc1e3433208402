"""The engine over a cache of the state in Redis, as a worker's round uses it.

A round goes: `decide` (decode; the `StateNeeds` the cache does not hold) → `load` what Redis
has for them → `apply` (the decisions: events, rejections and the `StateDelta` to persist) →
`commit` once Redis holds the writes, or `clear` when their fate is unknown. Two
implementations: `PythonDecider` (decode + `Engine` + `StateCache`, the reference) and the
compiled one in `streams.engine.native_engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from schemas.codec import dumps
from schemas.records import Response, decode_response
from schemas.rejections import Rejection
from streams.engine.engine import Engine, Item
from streams.engine.state import Held, PartKey, PartMeta, StateDelta, StateNeeds, ValueKey
from streams.engine.state_cache import CACHE_ENTRIES, StateCache

_EMPTY = PartMeta()


@dataclass(slots=True)
class Decision:
    """What one round's records produced."""

    # (record key: the message id in UTF-8, record value: the event as compact JSON, keys sorted)
    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    # (index of the record in the round, rejection), in the order they arise
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    delta: StateDelta = field(default_factory=StateDelta)
    # The round index of each `delta.taken` entry (its input offset is the dedupe score).
    taken_at: list[int] = field(default_factory=list)
    # The meta before the round of every part in `delta.parts`.
    before: dict[PartKey, PartMeta] = field(default_factory=dict)
    # The writes as the persist script takes them, when the decider made them itself (then
    # `delta` holds only `taken`): (state keys, the JSON array of groups of four).
    writes: tuple[list[str], bytes] | None = None

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        """The part's meta before the round (what `RedisStateStore.persist` compares with)."""
        return self.before.get((message_id, part_id)) or _EMPTY


@dataclass(frozen=True, slots=True)
class RedisLayout:
    """What a decider needs to make the persist script's writes, or the read script's
    request, itself."""

    prefix: str  # the key prefix (streams/redis_keys.py)
    base: int  # keys before the state keys in the script's KEYS
    window: int  # response ids remembered per message
    whole_fields: int = 0  # the most fields a values hash may have to be read whole


@dataclass(frozen=True, slots=True)
class ReadScript:
    """What a round reads, made by the decider itself: the read script's KEYS and ARGV
    (streams/lua/read_state.lua), and where its reply goes."""

    keys: list[str]
    args: list[bytes | int]
    take: Callable[[Any], None]  # takes the script's reply into the decider


# (outbox frames per input partition, [(events-topic partition, count, records)])
Routes = tuple[list[bytes], list[tuple[int, int, bytes]]]


class Decider(Protocol):
    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None,
               layout: RedisLayout | None = None) -> StateNeeds | ReadScript | None:
        """Take a round's record values; returns what they read that the cache does not hold.
        With a layout, that may come as the read script itself (None: it reads nothing)."""

    def load(self, metas: Mapping[PartKey, PartMeta], held: Mapping[ValueKey, Held | None],
             seen: Mapping[str, list[str]], whole: Collection[PartKey] = ()) -> None:
        """Take in what Redis holds (the shapes of `StateCache.loaded`, `Loaded`'s fields)."""

    def apply(self, layout: RedisLayout | None = None) -> Decision:
        """Decide the round taken by `decide`; with a layout, the writes may come made."""

    def route(self, keys: Sequence[bytes | None], starts: Sequence[int], partitions: int,
              max_bytes: int) -> Routes | None:
        """The applied round's events routed by the decider itself, or None when it does not
        (`RoundProcessor` routes `Decision.events` then): each input partition's outbox frames
        (`keys`: each record's Kafka key; `starts`: where each input partition's records
        begin), and [(events-topic partition, count, the records of a record batch)]."""

    def commit(self) -> None:
        """Redis holds the round's writes: the cache keeps them."""

    def clear(self) -> None:
        """Drop everything held; the next round loads what it needs again."""


class PythonDecider:
    """The reference: `decode_response`, `Engine` and a `StateCache`."""

    def __init__(self, engine: Engine, *, window: int, limit: int = CACHE_ENTRIES) -> None:
        self.engine = engine
        self.window = window
        self.cache = StateCache(limit)
        self._items: list[Item] = []
        self._delta: StateDelta | None = None

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None,
               layout: RedisLayout | None = None) -> StateNeeds:
        if authentic is None:
            self._items = [decode_response(value) for value in values]
        else:
            self._items = [decode_response(value, authentic=ok)
                           for value, ok in zip(values, authentic, strict=True)]
        self._delta = None
        return self.cache.missing(self.engine.needs(self._items))

    def load(self, metas: Mapping[PartKey, PartMeta], held: Mapping[ValueKey, Held | None],
             seen: Mapping[str, list[str]], whole: Collection[PartKey] = ()) -> None:
        self.cache.loaded(metas, held, seen, whole)

    def apply(self, layout: RedisLayout | None = None) -> Decision:
        items = self._items
        outcome = self.engine.apply_batch(items, self.cache)
        delta = self._delta = outcome.delta
        first: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            if isinstance(item, Response):
                first.setdefault((item.message_id, item.id), index)
        part_meta = self.cache.part_meta
        return Decision(
            events=[(event["message_id"].encode(), dumps(event)) for event in outcome.events],
            rejections=outcome.rejections,
            delta=delta,
            taken_at=[first[taken] for taken in delta.taken],
            before={part: part_meta(*part) for part in delta.parts},
        )

    def route(self, keys: Sequence[bytes | None], starts: Sequence[int], partitions: int,
              max_bytes: int) -> Routes | None:
        return None  # the processor routes the events

    def commit(self) -> None:
        if self._delta is not None:
            self.cache.written(self._delta, self.window)
            self._delta = None

    def clear(self) -> None:
        self.cache.clear()
        self._delta = None
