"""The reference `Decider`: `decode_response`, `Engine` and a `StateCache`, speaking the
store's reads and writes (streams/storage/protocol.py) in Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from msgstate.schemas.codec import dumps
from msgstate.schemas.records import Deletion, Erasure, decode_response
from msgstate.schemas.rejections import INVALID, Rejection, of_record
from msgstate.streams.engine.engine import Engine, Item
from msgstate.streams.engine.state import Held, PartKey, PartMeta, StateDelta, ValueKey
from msgstate.streams.engine.state_cache import CACHE_ENTRIES, StateCache
from msgstate.streams.rounds.decider import Decision
from msgstate.streams.storage.layout import (
    META,
    SEEN,
    TALLY,
    TYPE_FIELD_PREFIX,
    VALUES,
    VERSION_FIELD,
    KeyRef,
    decode_held,
    decode_meta,
    encode_held,
    split_field,
    value_field,
)
from msgstate.streams.storage.protocol import WHOLE_PART_FIELDS, Read, Writes

_VERSION = VERSION_FIELD.decode()
# The records of SPEC section 3a need state the workers do not keep in Redis yet (deletion
# marks, the identity index, erasure ids): refused plainly rather than applied in part.
_NOT_YET = (Deletion, Erasure)


def _not_yet(record: Deletion | Erasure) -> Rejection:
    kind = "delete_message" if type(record) is Deletion else "erase_identity"
    return of_record(record._asdict(), INVALID,
                     f"the state workers do not apply {kind} records yet")

_TYPE_PREFIX = TYPE_FIELD_PREFIX.decode()


class PythonDecider:
    def __init__(self, engine: Engine, *, window: int, whole_part_fields: int = WHOLE_PART_FIELDS,
                 limit: int = CACHE_ENTRIES) -> None:
        self.engine = engine
        self.window = window
        self.whole_part_fields = whole_part_fields
        self.cache = StateCache(limit)
        self._items: list[Item] = []
        self._read: tuple[Read, list[list[ValueKey]]] | None = None
        self._delta: StateDelta | None = None

    @property
    def restarts(self) -> int:
        return self.cache.restarts

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None) -> Read | None:
        if authentic is None:
            items = [decode_response(value) for value in values]
        else:
            items = [decode_response(value, authentic=ok)
                     for value, ok in zip(values, authentic, strict=True)]
        self._items = [_not_yet(item) if isinstance(item, _NOT_YET) else item for item in items]
        self._delta = None
        needs = self.cache.missing(self.engine.needs(self._items))
        by_part: dict[PartKey, list[ValueKey]] = defaultdict(list)
        for key in needs.values:
            by_part[key[:2]].append(key)
        parts = list(needs.parts)
        messages = list({message_id for message_id, _ in needs.response_ids})
        if not (parts or by_part or messages):
            self._read = None
            return None
        args: list[bytes | int] = [len(parts), len(by_part), len(messages), self.whole_part_fields]
        args += [len(vkeys) for vkeys in by_part.values()]
        for vkeys in by_part.values():
            args += [value_field(k[2], k[3]) for k in vkeys]
        read = Read(parts, list(by_part), messages, args)
        self._read = (read, list(by_part.values()))
        return read

    def load(self, reply: Any) -> None:
        if self._read is None:
            raise RuntimeError("no read was asked for")
        (read, asked), self._read = self._read, None
        raw_metas, raw_values, raw_ids, raw_whole = reply
        metas = {part: decode_meta(dict(zip(raw[::2], raw[1::2], strict=True)))
                 for part, raw in zip(read.parts, raw_metas, strict=True)}
        held: dict[ValueKey, Held | None] = {}
        whole: set[PartKey] = set()
        for part, vkeys, raw, is_whole in zip(read.value_parts, asked, raw_values, raw_whole,
                                              strict=True):
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
                for message_id, ids in zip(read.messages, raw_ids, strict=True)}
        self.cache.loaded(metas, held, seen, whole)

    def apply(self) -> Decision:
        outcome = self.engine.apply_batch(self._items, self.cache)
        self._delta = outcome.delta
        return Decision(
            events=[(event["message_id"].encode(), dumps(event)) for event in outcome.events],
            rejections=outcome.rejections,
            writes=self._writes(outcome.delta),
        )

    def commit(self) -> None:
        if self._delta is not None:
            self.cache.written(self._delta, self.window)
            self._delta = None

    def clear(self) -> None:
        self.cache.clear()
        self._delta = None
        self._read = None

    def _writes(self, delta: StateDelta) -> Writes:
        """The delta as the persist script's groups of four; only what changed of a meta."""
        refs: list[KeyRef] = []
        index: dict[KeyRef, int] = {}

        def at(ref: KeyRef) -> int:
            found = index.get(ref)
            if found is None:
                refs.append(ref)
                found = index[ref] = len(refs)
            return found

        # One JSON argument instead of four per write: packing hundreds of arguments was the
        # larger part of the persist call's cost. Every field and value is UTF-8.
        ops: list[str | int] = []
        add = ops.extend
        part_meta = self.cache.part_meta
        for (message_id, part_id), meta in delta.parts.items():
            old: PartMeta = part_meta(message_id, part_id)
            k = at((META, message_id, part_id))
            if meta.version != old.version:
                add(("H", k, _VERSION, str(meta.version)))
            for name, kind in meta.types.items():
                if name not in old.types:
                    add(("H", k, _TYPE_PREFIX + name, kind))
        for (message_id, part_id, name, identity), held in delta.values.items():
            k = at((VALUES, message_id, part_id))
            if held is None:
                add(("D", k, f"{name}\0{identity}", ""))
            else:
                add(("H", k, f"{name}\0{identity}", encode_held(held).decode()))
        for (message_id, part_id, name, encoded), change in delta.tallies.items():
            add(("I", at((TALLY, message_id, part_id)), f"{name}\0{encoded.decode()}", str(change)))
        trimmed: set[str] = set()
        for message_id, response_id in delta.taken:
            add(("L", at((SEEN, message_id, "")), response_id, ""))
            trimmed.add(message_id)
        window = str(self.window)
        for message_id in trimmed:
            add(("T", at((SEEN, message_id, "")), "", window))
        return Writes(refs, orjson.dumps(ops))
