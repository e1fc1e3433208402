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
from msgstate.streams.engine.state import Held, PartMeta, StateDelta, ValueKey
from msgstate.streams.engine.summary import render_summary

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
