"""The compiled `Decider` (native/, Rust): decode, the rules and the cache in compiled memory.

It makes the store's reads and writes itself, key references and all, and takes the read's
reply without a Python object per key, field and value: done in Python, those took a sixth of
a worker's CPU. Same decisions and writes as `PythonDecider` (held equal by property tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.schemas.registry import check_registry, registry_caps
from msgstate.streams.engine import native_engine
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.state_cache import CACHE_ENTRIES
from msgstate.streams.rounds.changelog import RoundLog
from msgstate.streams.rounds.decider import Decision
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import DELETED_FIELD, MESSAGE, TALLY, KeyRef
from msgstate.streams.storage.protocol import WHOLE_PART_FIELDS, Read, Writes

_DELETED = DELETED_FIELD.encode()


class CompiledDecider:
    """Past `limit` entries, `decide` starts again empty (like `StateCache`).

    A round that adds to a capped state (SPEC v1.1 `max_values`) reads that part's tally whole,
    as the reference does, and the compiled core holds it for that round only. The compiled
    cache reads no message's or identity's every holding, so a round holding a record with a
    "kind" (a deletion or an erasure) is decided by the reference, `PythonDecider`; and it keeps
    no deletion marks, so each message it reads (not cached) has its mark read beside it, and a
    round naming a deleted message goes to the reference too. Each decider's cache misses the
    other's writes: both are dropped when the round changes hands (so a deleted message is never
    in the compiled cache: it is read again each time).
    """

    __slots__ = ("_core", "_every", "_marks", "_on_reference", "_reference", "_restarts",
                 "_round", "_unchecked", "limit", "whole_part_fields", "window")

    def __init__(
        self,
        registry: Mapping[str, Any] | None = None,
        *,
        window: int = DEDUPE_WINDOW,
        whole_part_fields: int = WHOLE_PART_FIELDS,
        limit: int = CACHE_ENTRIES,
    ) -> None:
        types = check_registry(registry or {})
        self._core = native_engine.cache_core(types, registry_caps(registry or {}), window)
        self._reference = PythonDecider(Engine(registry or {}), window=window,
                                        whole_part_fields=whole_part_fields, limit=limit)
        self._on_reference = False
        self.window = window
        self.whole_part_fields = whole_part_fields
        self.limit = limit
        # Counting the entries walks every part: at a few per cent of a worker's CPU under a
        # steady load, it is done once per hundredth of the limit in records (a record adds a
        # few entries), so the cache may pass its limit by a few per cent.
        self._every = max(1, min(10_000, limit // 100))
        self._unchecked = 0
        self._restarts = 0  # times the limit emptied the compiled cache
        # The round's records, for the reference should its read find a deleted message.
        self._round: tuple[Sequence[bytes], Sequence[bool] | None] = ((), None)
        self._marks = 0  # deletion marks read: the hashes read first, the tallies after them

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None) -> Read | None:
        if authentic is not None and len(authentic) != len(values):
            raise ValueError("authentic needs one verdict per value")
        # A record with a "kind" may be a deletion or an erasure; a false alarm costs speed only.
        reference = any(b'"kind"' in value for value in values)
        if reference != self._on_reference:
            self.clear()
            self._on_reference = reference
        if reference:
            return self._reference.decide(values, authentic)
        self._unchecked += len(values)
        if self._unchecked >= self._every:
            self._unchecked = 0
            if self._core.entries() > self.limit:
                self._core.clear()
                self._restarts += 1
        request = self._core.decide(values, authentic, self.whole_part_fields)
        if request is None:
            return None
        self._round = (values, authentic)
        parts, value_parts, messages, args, tallies = request
        # Each message read anew: its deletion mark too.
        hashes: list[KeyRef] = [(MESSAGE, message_id, "") for message_id in messages]
        self._marks = len(hashes)
        hashes += [(TALLY, message_id, part_id) for message_id, part_id in tallies]
        if not hashes:
            return Read(parts, value_parts, messages, args)
        return Read(parts, value_parts, messages, [*args, len(hashes), 0], hashes=hashes)

    @property
    def restarts(self) -> int:
        return self._restarts + self._reference.restarts

    def load(self, reply: Any) -> Read | None:
        if self._on_reference:
            return self._reference.load(reply)
        hashes = reply[4] if len(reply) > 4 else []
        if any(_DELETED in raw[::2] for raw in hashes[:self._marks]):
            # A message of the round was deleted: the reference decides it, from a new read.
            self.clear()
            self._on_reference = True
            return self._reference.decide(*self._round)
        self._core.load(reply[:4], hashes[self._marks:])
        return None

    def apply(self) -> Decision:
        if self._on_reference:
            return self._reference.apply()
        events, rejections = self._core.apply()
        keys, ops = self._core.writes()
        return Decision(events=events,
                        rejections=[(index, orjson.loads(line)) for index, line in rejections],
                        writes=Writes(list(keys), ops))

    def changelog(self, where: Callable[[str], int], last: Mapping[int, int]) -> RoundLog:
        if self._on_reference:
            return self._reference.changelog(where, last)
        return RoundLog(*self._core.changelog(where, list(last.items())))

    def commit(self) -> None:
        if self._on_reference:
            self._reference.commit()
            return
        self._core.commit()

    def clear(self) -> None:
        self._core.clear()
        self._reference.clear()

    def summary_line(self, message_id: str, part_id: str) -> bytes:
        """What the cache holds of a part, as its summary line (for tests)."""
        return self._core.summary_line(message_id, part_id, None)
