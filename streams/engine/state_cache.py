"""What a partition's holder knows of its messages' state in Redis, kept between batches.

While a worker holds a partition's token, it is the only writer of that partition's messages
(a message id is the record key, so it lives in one partition), so what it loaded or wrote
stays true until the token moves. In steady state a batch then loads nothing: one Redis round
trip (the persist script, which still checks the token) per batch. The cache is dropped with
the assignment, and whenever a write's outcome is unknown.

A message's dedupe memory is held whole (every id Redis keeps for it, oldest first), so the
cache trims it exactly as the persist script trims the sorted set. A message's deletion mark is
held too, once read.

What only deletions, erasures and caps read (a message's part ids and holdings whole, an
identity's index, erasure ids, capped tallies) is held for one round only (`round`): it is read
for each round that needs it, and rare. An identity's index is its partition's, and the round
that reads it is that partition's only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from msgstate.streams.engine.state import (
    Held,
    Holdings,
    PartKey,
    PartMeta,
    StateDelta,
    StateKey,
    StateNeeds,
    TallyKey,
    ValueKey,
)

_EMPTY = PartMeta()
# Entries (parts, values, remembered ids) a worker's cache holds before it starts again empty
# (MSGSTATE_CACHE_ENTRIES): about 60 bytes each in the compiled cache, 240 MB in all. Every
# start costs a read of each message's dedupe memory and each part again; when the partitions
# a worker holds have more live entries than this, it keeps starting again and its CPU per
# response, and Redis's, go up two- to fourfold (docs/operations.md#sizing-the-state-cache).
# Forgetting the least recently used messages instead measured no better: the entries missed
# are the same ones.
CACHE_ENTRIES = 4_000_000


@dataclass(slots=True)
class RoundState:
    """The v1.1 state one round read: see the module's docstring."""

    parts_of: dict[str, list[str]] = field(default_factory=dict)  # message -> its part ids
    holdings: dict[PartKey, dict[str, dict[str, Held]]] = field(default_factory=dict)
    index: dict[str, list[StateKey]] = field(default_factory=dict)  # identity -> its index
    erasures: dict[str, bool] = field(default_factory=dict)  # erasure id -> taken
    tallies: dict[PartKey, dict[str, dict[bytes, int]]] = field(default_factory=dict)


class StateCache:
    """A StateView over what was loaded from or written to Redis."""

    __slots__ = ("_seen_count", "deleted_marks", "held_by", "limit", "metas", "restarts", "round",
                 "seen_ids", "whole")

    def __init__(self, limit: int = CACHE_ENTRIES) -> None:
        self.limit = limit  # entries (metas, values, remembered ids); past it, start again empty
        self.metas: dict[PartKey, PartMeta] = {}
        self.held_by: dict[ValueKey, Held | None] = {}
        # message id -> its remembered response ids, oldest first
        self.seen_ids: dict[str, OrderedDict[str, None]] = {}
        self._seen_count = 0
        # Parts whose every value is held: one not in `held_by` is absent, no read needed.
        self.whole: set[PartKey] = set()
        self.deleted_marks: dict[str, bool] = {}  # message id -> deleted
        self.round = RoundState()
        self.restarts = 0  # times the limit emptied the cache

    # -- StateView -------------------------------------------------------------

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        return self.metas.get((message_id, part_id)) or _EMPTY

    def held(self, key: ValueKey) -> Held | None:
        return self.held_by.get(key)

    def seen(self, message_id: str, response_id: str) -> bool:
        return response_id in self.seen_ids[message_id]

    def deleted(self, message_id: str) -> bool:
        return self.deleted_marks[message_id]

    def tally_count(self, key: TallyKey) -> int:
        message_id, part_id, name, value = key
        return self.round.tallies[message_id, part_id].get(name, {}).get(value, 0)

    def distinct(self, key: StateKey) -> int:
        message_id, part_id, name = key
        return len(self.round.tallies[message_id, part_id].get(name, ()))

    def parts_of(self, message_id: str) -> list[str]:
        return self.round.parts_of[message_id]

    def part_holdings(self, message_id: str, part_id: str) -> Holdings:
        return self.round.holdings[message_id, part_id]

    def identity_index(self, identity_id: str) -> list[StateKey]:
        return self.round.index[identity_id]

    def erasure_taken(self, erasure_id: str) -> bool:
        return self.round.erasures[erasure_id]

    # -- upkeep ----------------------------------------------------------------

    def missing(self, needs: StateNeeds) -> StateNeeds:
        """The part of `needs` not known here; makes room first when the cache is full."""
        entries = len(self.held_by) + len(self.metas) + self._seen_count + len(self.deleted_marks)
        if entries > self.limit:
            self.clear()
            self.restarts += 1
        self.round = RoundState()
        metas, held_by, seen_ids, whole = self.metas, self.held_by, self.seen_ids, self.whole
        return StateNeeds(
            parts={p for p in needs.parts if p not in metas},
            values={v for v in needs.values if v not in held_by and v[:2] not in whole},
            response_ids={m for m in needs.response_ids if m[0] not in seen_ids},
            deleted={m for m in needs.deleted if m not in self.deleted_marks},
            capped=needs.capped,
            whole=needs.whole,
            identities=needs.identities,
            erasures=needs.erasures,
        )

    def clear(self) -> None:
        self.metas.clear()
        self.held_by.clear()
        self.seen_ids.clear()
        self._seen_count = 0
        self.whole.clear()
        self.deleted_marks.clear()
        self.round = RoundState()

    def loaded(self, metas: Mapping[PartKey, PartMeta], held: Mapping[ValueKey, Held | None],
               seen: Mapping[str, list[str]], whole: Collection[PartKey] = ()) -> None:
        """Take in what was read from Redis (`held` names absent values with None; `seen`
        gives a message's whole dedupe memory, oldest first; `held` has every value of the
        `whole` parts)."""
        self.metas.update(metas)
        self.held_by.update(held)
        self.whole.update(whole)
        for message_id, ids in seen.items():
            self.seen_ids[message_id] = OrderedDict.fromkeys(ids)
            self._seen_count += len(ids)

    def written(self, delta: StateDelta, window: int) -> None:
        """Take in a batch's writes, once Redis holds them."""
        self.metas.update(delta.parts)
        self.held_by.update(delta.values)
        for message_id in delta.deleted:
            self.deleted_marks[message_id] = True
        trimmed = set()
        for message_id, response_id in delta.taken:
            self.seen_ids[message_id][response_id] = None
            trimmed.add(message_id)
        self._seen_count += len(delta.taken)
        for message_id in trimmed:
            ids = self.seen_ids[message_id]
            for _ in range(len(ids) - window):
                ids.popitem(last=False)
                self._seen_count -= 1
