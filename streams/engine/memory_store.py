"""An in-memory store: a complete `StateView` that applies `StateDelta`s.

Replay and the unit tests use it; the Redis store is its persistent twin.
Holdings are nested per part and per name, so the strings of a key are held
once, and equal value encodings are shared: a live value costs one dict
entry. Tallies are counted from the holdings when a summary is rendered; the
store keeps only those the deltas carry (with replay's engine, the capped
states', whose cap reads them). v1.1: it also keeps the deletion marks, each
message's part ids, each identity's index of where it holds values, and the
erasure ids taken (see state.py).
"""

from __future__ import annotations

import sys
from collections.abc import Container
from types import MappingProxyType
from typing import Any

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.engine.state import (
    Held,
    Holdings,
    PartKey,
    PartMeta,
    StateDelta,
    StateKey,
    TallyKey,
    ValueKey,
)
from msgstate.streams.engine.summary import SummaryRenderer, deleted_summary

_EMPTY = PartMeta()
_NO_HOLDINGS: Holdings = MappingProxyType({})


class _Part:
    __slots__ = ("holdings", "meta", "mid", "pid")

    def __init__(self, mid: str = "", pid: str = "") -> None:
        self.mid = mid  # interned: the identity index shares them
        self.pid = pid
        self.meta = _EMPTY
        self.holdings: dict[str, dict[str, Held]] = {}  # name -> identity -> holding


# The response ids taken for one message, oldest first (a dict as an ordered set). It
# keeps the last `window` of them at least: when twice that many are held, the older
# half is dropped, which keeps each add O(1) amortized.
_Taken = dict[str, None]
_NONE_TAKEN: _Taken = {}


class MemoryStore:
    """All state in process memory; `window` response ids are remembered per message."""

    __slots__ = (
        "_deleted", "_encodings", "_erasures", "_index", "_message_parts", "_parts", "_seen",
        "_tallies", "_window",
    )

    def __init__(self, window: int = DEDUPE_WINDOW) -> None:
        if window < 1:
            raise ValueError("the dedupe window must hold at least one id")
        self._window = window
        self._parts: dict[PartKey, _Part] = {}
        self._seen: dict[str, _Taken] = {}
        self._encodings: dict[bytes, bytes] = {}  # shares equal value encodings
        self._message_parts: dict[str, list[str]] = {}  # message -> its part ids
        self._deleted: set[str] = set()
        # identity -> where it holds a value, (message, part, name) -> None (an ordered set)
        self._index: dict[str, dict[StateKey, None]] = {}
        self._tallies: dict[StateKey, dict[bytes, int]] = {}  # the counts the deltas carry
        self._erasures: set[str] = set()

    def parts(self) -> list[PartKey]:
        """Every (message, part) that was written."""
        return list(self._parts)

    # -- StateView -------------------------------------------------------------

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        part = self._parts.get((message_id, part_id))
        return _EMPTY if part is None else part.meta

    def held(self, key: ValueKey) -> Held | None:
        part = self._parts.get((key[0], key[1]))
        if part is None:
            return None
        held_by = part.holdings.get(key[2])
        return None if held_by is None else held_by.get(key[3])

    def part_state(
        self, message_id: str, part_id: str
    ) -> tuple[PartMeta, Holdings, Container[str]]:
        """The part's meta, holdings and taken ids, live (a PartStateView: only read)."""
        part = self._parts.get((message_id, part_id))
        taken = self._seen.get(message_id, _NONE_TAKEN)
        if part is None:
            return _EMPTY, _NO_HOLDINGS, taken
        return part.meta, part.holdings, taken

    def seen(self, message_id: str, response_id: str) -> bool:
        return response_id in self._seen.get(message_id, _NONE_TAKEN)

    def deleted(self, message_id: str) -> bool:
        return message_id in self._deleted

    def tally_count(self, key: TallyKey) -> int:
        counts = self._tallies.get((key[0], key[1], key[2]))
        return 0 if counts is None else counts.get(key[3], 0)

    def distinct(self, key: StateKey) -> int:
        return len(self._tallies.get(key, ()))

    def parts_of(self, message_id: str) -> list[str]:
        return self._message_parts.get(message_id, [])

    def part_holdings(self, message_id: str, part_id: str) -> Holdings:
        part = self._parts.get((message_id, part_id))
        return _NO_HOLDINGS if part is None else part.holdings

    def identity_index(self, identity_id: str) -> list[StateKey]:
        return list(self._index.get(identity_id, ()))

    def erasure_taken(self, erasure_id: str) -> bool:
        return erasure_id in self._erasures

    # -- writes ----------------------------------------------------------------

    def apply(self, delta: StateDelta) -> None:
        """Apply one batch's writes. The delta's PartMeta objects are kept, not copied."""
        parts = self._parts
        new_part = self._part
        share = self._encodings.setdefault
        intern = sys.intern
        for key, meta in delta.parts.items():
            (parts.get(key) or new_part(key)).meta = meta
        index = self._index
        for (mid, pid, name, ident), held in delta.values.items():
            part = parts.get((mid, pid)) or new_part((mid, pid))
            held_by = part.holdings.get(name)
            if held is None:
                if held_by is not None and held_by.pop(ident, None) is not None:
                    held_at = index[ident]
                    del held_at[(mid, pid, name)]
                    if not held_at:
                        del index[ident]
                continue
            if held_by is None:
                held_by = part.holdings[intern(name)] = {}
            if isinstance(held, bytes):
                held = share(held, held)
            else:
                # A Set's members: the engine appends a new one last, the others are shared.
                last = held[-1]
                if share(last, last) is not last:
                    held = tuple(map(share, held, held))
            if ident in held_by:
                held_by[ident] = held
            else:
                ident = intern(ident)
                held_by[ident] = held
                where = index.get(ident)
                if where is None:
                    where = index[ident] = {}
                where[(part.mid, part.pid, name)] = None
        if delta.tallies:
            self._count(delta.tallies)
        self._deleted.update(delta.deleted)
        self._erasures.update(delta.erasures)
        seen = self._seen
        size = self._window
        for mid, rid in delta.taken:
            taken = seen.get(mid)
            if taken is None:
                taken = seen[intern(mid)] = {}
            taken[rid] = None
            if len(taken) >= 2 * size:
                seen[mid] = dict.fromkeys(list(taken)[-size:])

    def _part(self, key: PartKey) -> _Part:
        part = self._parts.get(key)
        if part is None:
            mid, pid = sys.intern(key[0]), sys.intern(key[1])
            part = self._parts[(mid, pid)] = _Part(mid, pid)
            self._message_parts.setdefault(mid, []).append(pid)
        return part

    def _count(self, changes: dict[TallyKey, int]) -> None:
        tallies = self._tallies
        for (mid, pid, name, value), change in changes.items():
            counts = tallies.get((mid, pid, name))
            if counts is None:
                counts = tallies[(mid, pid, name)] = {}
            now = counts.get(value, 0) + change
            if now > 0:
                counts[value] = now
            else:
                counts.pop(value, None)
                if not counts:
                    del tallies[(mid, pid, name)]

    # -- reads -----------------------------------------------------------------

    def summary(self, message_id: str, part_id: str, clip: int | None = None) -> dict[str, Any]:
        """The part's summary; a part nobody wrote has version 0 and no states."""
        part = self._parts.get((message_id, part_id)) or _Part()
        if message_id in self._deleted:
            return deleted_summary(message_id, part_id, part.meta.version)
        return SummaryRenderer().render(message_id, part_id, part.meta, part.holdings, None, clip)

    def summaries(self, clip: int | None = None) -> list[dict[str, Any]]:
        """Every summary of a part with at least one fixed name, by (message_id, part_id)."""
        render = SummaryRenderer().render
        parts = self._parts
        deleted = self._deleted
        return [
            deleted_summary(mid, pid, parts[(mid, pid)].meta.version) if mid in deleted else
            render(mid, pid, parts[(mid, pid)].meta, parts[(mid, pid)].holdings, None, clip)
            for mid, pid in sorted(parts)
            if parts[(mid, pid)].meta.types
        ]

    def live_values(self) -> int:
        """How many (identity, state, value) are held: one per scalar, one per Set member."""
        total = 0
        for part in self._parts.values():
            for held_by in part.holdings.values():
                for held in held_by.values():
                    total += 1 if isinstance(held, bytes) else len(held)
        return total

    def forget_response_ids(self) -> None:
        """Drop the dedupe memory (to measure the state alone)."""
        self._seen.clear()
