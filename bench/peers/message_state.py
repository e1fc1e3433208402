"""One message's state, as the peers keep it: a `StateView` for the engine, and its bytes.

The peers keep state per message id (a Redis key, a table row, a quix State prefix), so
each holds one of these. `to_bytes` / `from_bytes` give a compact JSON form; value
encodings are kept as their canonical JSON text, so the round trip is exact.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import islice
from typing import Any

import orjson

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.engine.state import (
    Held,
    Holdings,
    PartMeta,
    StateDelta,
    StateKey,
    TallyKey,
    ValueKey,
)
from msgstate.streams.engine.summary import count_tallies, render_summary

_EMPTY = PartMeta()


class MessageState:
    """The parts, holdings and dedupe memory of one message."""

    __slots__ = ("holdings", "metas", "seen_ids")

    def __init__(self) -> None:
        self.metas: dict[str, PartMeta] = {}  # part -> version and fixed types
        self.holdings: dict[tuple[str, str, str], Held] = {}  # (part, name, identity) -> holding
        self.seen_ids: dict[str, None] = {}  # response ids taken, oldest first

    # -- StateView -------------------------------------------------------------

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        return self.metas.get(part_id) or _EMPTY

    def held(self, key: ValueKey) -> Held | None:
        return self.holdings.get((key[1], key[2], key[3]))

    def seen(self, message_id: str, response_id: str) -> bool:
        return response_id in self.seen_ids

    # The v1.1 reads, from this message's holdings. The peers are measured on v1
    # workloads: they keep no deletion mark and no erasure ids.

    def deleted(self, message_id: str) -> bool:
        return False

    def tally_count(self, key: TallyKey) -> int:
        return count_tallies(self.holdings_of(key[1], key[2])).get(key[3], 0)

    def distinct(self, key: StateKey) -> int:
        return len(count_tallies(self.holdings_of(key[1], key[2])))

    def parts_of(self, message_id: str) -> list[str]:
        return list(self.metas)

    def part_holdings(self, message_id: str, part_id: str) -> Holdings:
        by_name: dict[str, dict[str, Held]] = defaultdict(dict)
        for (pid, name, identity), held in self.holdings.items():
            if pid == part_id:
                by_name[name][identity] = held
        return by_name

    def identity_index(self, identity_id: str) -> list[StateKey]:
        return [("", pid, name) for (pid, name, identity) in self.holdings
                if identity == identity_id]

    def erasure_taken(self, erasure_id: str) -> bool:
        return False

    def holdings_of(self, part_id: str, name: str) -> dict[str, Held]:
        return {identity: held for (pid, n, identity), held in self.holdings.items()
                if pid == part_id and n == name}

    # -- writes ----------------------------------------------------------------

    def apply(self, delta: StateDelta) -> None:
        """Apply the writes of a batch of this message's records."""
        for (_, part_id), meta in delta.parts.items():
            self.metas[part_id] = meta
        holdings = self.holdings
        for (_, part_id, name, identity), held in delta.values.items():
            if held is None:
                holdings.pop((part_id, name, identity), None)
            else:
                holdings[(part_id, name, identity)] = held
        seen = self.seen_ids
        for _, response_id in delta.taken:
            seen[response_id] = None
        if len(seen) > DEDUPE_WINDOW:
            for old in list(islice(seen, len(seen) - DEDUPE_WINDOW)):
                del seen[old]

    # -- reads -----------------------------------------------------------------

    def summaries(self, message_id: str) -> list[dict[str, Any]]:
        """The summaries of the parts with a fixed name, by part id (SPEC section 4)."""
        by_part: dict[str, dict[str, dict[str, Held]]] = defaultdict(lambda: defaultdict(dict))
        for (part_id, name, identity), held in self.holdings.items():
            by_part[part_id][name][identity] = held
        return [render_summary(message_id, part_id, meta, by_part.get(part_id, {}))
                for part_id, meta in sorted(self.metas.items()) if meta.types]

    # -- bytes -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "parts": {pid: [meta.version, meta.types] for pid, meta in self.metas.items()},
            "held": [[pid, name, ident, held.decode() if isinstance(held, bytes)
                      else [member.decode() for member in held]]
                     for (pid, name, ident), held in self.holdings.items()],
            "seen": list(self.seen_ids),
        })

    @classmethod
    def from_bytes(cls, raw: bytes) -> MessageState:
        doc = orjson.loads(raw)
        state = cls()
        state.metas = {pid: PartMeta(version, types) for pid, (version, types) in doc["parts"].items()}
        state.holdings = {
            (pid, name, ident): held.encode() if isinstance(held, str)
            else tuple(member.encode() for member in held)
            for pid, name, ident, held in doc["held"]
        }
        state.seen_ids = dict.fromkeys(doc["seen"])
        return state
