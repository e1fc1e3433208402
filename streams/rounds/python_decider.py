"""The reference `Decider`: `decode_response`, `Engine` and a `StateCache`, speaking the
store's reads and writes (streams/storage/protocol.py) in Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from msgstate.schemas.codec import dumps
from msgstate.schemas.records import Deletion, decode_response
from msgstate.streams.engine.engine import Engine, Item
from msgstate.streams.engine.state import (
    Held,
    PartKey,
    PartMeta,
    StateDelta,
    StateNeeds,
    ValueKey,
)
from msgstate.streams.engine.state_cache import CACHE_ENTRIES, StateCache
from msgstate.streams.rounds.changelog import RoundLog, round_log
from msgstate.streams.rounds.decider import Decision
from msgstate.streams.storage.layout import (
    DELETED_FIELD,
    ERASURES,
    INDEX,
    MARK,
    MESSAGE,
    META,
    PART_FIELD_PREFIX,
    SEEN,
    TALLY,
    TYPE_FIELD_PREFIX,
    VALUES,
    VERSION_FIELD,
    KeyRef,
    decode_held,
    decode_meta,
    encode_held,
    index_field,
    part_field,
    split_field,
    split_index_field,
    value_field,
)
from msgstate.streams.storage.protocol import WHOLE_PART_FIELDS, Read, Writes

_VERSION = VERSION_FIELD.decode()
_TYPE_PREFIX = TYPE_FIELD_PREFIX.decode()
_DELETED = DELETED_FIELD.encode()
_PART = PART_FIELD_PREFIX.encode()


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class PythonDecider:
    def __init__(self, engine: Engine, *, window: int, whole_part_fields: int = WHOLE_PART_FIELDS,
                 limit: int = CACHE_ENTRIES) -> None:
        self.engine = engine
        self.window = window
        self.whole_part_fields = whole_part_fields
        self.cache = StateCache(limit)
        self._items: list[Item] = []
        # The read asked for: the read, the value keys asked per part, the erasure ids asked.
        self._read: tuple[Read, list[list[ValueKey]], list[str]] | None = None
        self._second = False  # the read asked for is the round's second
        self._delta: StateDelta | None = None
        self._applied: Writes | None = None  # the applied round's writes

    @property
    def restarts(self) -> int:
        return self.cache.restarts

    def decide(self, values: Sequence[bytes], authentic: Sequence[bool] | None = None) -> Read | None:
        if authentic is None:
            self._items = [decode_response(value) for value in values]
        else:
            self._items = [decode_response(value, authentic=ok)
                           for value, ok in zip(values, authentic, strict=True)]
        self._delta = None
        self._second = False
        return self._read_for(self.cache.missing(self.engine.needs(self._items)))

    def _read_for(self, needs: StateNeeds, whole_parts: Sequence[PartKey] = ()) -> Read | None:
        """The read of `needs` (what the cache lacks), and of `whole_parts`' holdings whole."""
        by_part: dict[PartKey, list[ValueKey]] = defaultdict(list)
        for key in needs.values:
            by_part[key[:2]].append(key)
        parts = list(needs.parts)
        messages = list({message_id for message_id, _ in needs.response_ids})
        hashes: list[KeyRef] = [(MESSAGE, m, "") for m in needs.deleted | needs.whole]
        hashes += [(TALLY, m, p) for m, p in {state[:2] for state in needs.capped}]
        hashes += [(VALUES, m, p) for m, p in whole_parts]
        hashes += [(INDEX, "", identity) for identity in needs.identities]
        erasures = list(needs.erasures)
        if not (parts or by_part or messages or hashes or erasures):
            self._read = None
            return None
        args: list[bytes | int] = [len(parts), len(by_part), len(messages), self.whole_part_fields]
        args += [len(vkeys) for vkeys in by_part.values()]
        for vkeys in by_part.values():
            args += [value_field(k[2], k[3]) for k in vkeys]
        fields: list[KeyRef] = []
        if hashes or erasures:
            fields = [(ERASURES, "", "")] * len(erasures)
            args += [len(hashes), len(fields), *(e.encode() for e in erasures)]
        read = Read(parts, list(by_part), messages, args, hashes, fields)
        self._read = (read, list(by_part.values()), erasures)
        return read

    def load(self, reply: Any) -> Read | None:
        if self._read is None:
            raise RuntimeError("no read was asked for")
        (read, asked, erasures), self._read = self._read, None
        raw_metas, raw_values, raw_ids, raw_whole = reply[:4]
        metas = {part: decode_meta(_pairs(raw)) for part, raw in zip(read.parts, raw_metas, strict=True)}
        # A holding's type: the part's, from what is loaded now or was before.
        def kind(message_id: str, part_id: str, name: str) -> str:
            meta = metas.get((message_id, part_id)) or self.cache.part_meta(message_id, part_id)
            return meta.types.get(name, "")

        held: dict[ValueKey, Held | None] = {}
        whole: set[PartKey] = set()
        for part, vkeys, raw, is_whole in zip(read.value_parts, asked, raw_values, raw_whole,
                                              strict=True):
            message_id, part_id = part
            if is_whole:
                whole.add(part)
                for field, value in zip(raw[::2], raw[1::2], strict=True):
                    name, identity = split_field(field)
                    held[message_id, part_id, name, identity.decode()] = decode_held(
                        value, kind(message_id, part_id, name))
                # Every value asked for has its answer, as in a read field by field.
                for key in vkeys:
                    held.setdefault(key, None)
            else:
                for key, value in zip(vkeys, raw, strict=True):
                    held[key] = None if value is None else decode_held(value, kind(*key[:3]))
        seen = {message_id: [rid.decode() for rid in ids]
                for message_id, ids in zip(read.messages, raw_ids, strict=True)}
        self.cache.loaded(metas, held, seen, whole)
        if len(reply) == 4:
            return None
        raw_hashes, raw_fields = reply[4:]
        state = self.cache.round
        for (what, message_id, part_id), raw in zip(read.hashes, raw_hashes, strict=True):
            got = _pairs(raw)
            if what == MESSAGE:
                self.cache.deleted_marks[message_id] = _DELETED in got
                state.parts_of[message_id] = [f[len(_PART):].decode() for f in got
                                              if f.startswith(_PART)]
            elif what == INDEX:  # an identity's index (its id is the ref's third item)
                state.index[part_id] = sorted(split_index_field(f) for f in got)
            elif what == TALLY:
                counts: dict[str, dict[bytes, int]] = defaultdict(dict)
                for field, count in got.items():
                    name, encoded = split_field(field)
                    counts[name][encoded] = int(count)
                state.tallies[message_id, part_id] = counts
            else:  # a part's holdings whole, for a deletion
                holdings: dict[str, dict[str, Held]] = defaultdict(dict)
                for field, value in got.items():
                    name, identity = split_field(field)
                    holdings[name][identity.decode()] = decode_held(
                        value, kind(message_id, part_id, name))
                state.holdings[message_id, part_id] = holdings
        for erasure_id, value in zip(erasures, raw_fields, strict=True):
            state.erasures[erasure_id] = value is not None
        if self._second:
            return None
        self._second = True
        return self._second_read()

    def _second_read(self) -> Read | None:
        """What deletions and erasures read once the first read named it: each deleted
        message's parts, and each erased identity's holdings with their parts' metas."""
        cache, state = self.cache, self.cache.round
        needs = StateNeeds()
        whole_parts: list[PartKey] = []
        for message_id, part_ids in state.parts_of.items():
            if message_id in self._whole_messages():
                whole_parts += [(message_id, part_id) for part_id in part_ids]
        for message_id, part_id in whole_parts:
            needs.parts.add((message_id, part_id))
        for identity, entries in state.index.items():
            for message_id, part_id, name in entries:
                needs.parts.add((message_id, part_id))
                needs.values.add((message_id, part_id, name, identity))
        missing = StateNeeds(
            parts={p for p in needs.parts if p not in cache.metas},
            values={v for v in needs.values if v not in cache.held_by and v[:2] not in cache.whole})
        return self._read_for(missing, whole_parts)

    def _whole_messages(self) -> set[str]:
        return {item.message_id for item in self._items if isinstance(item, Deletion)}

    def apply(self) -> Decision:
        outcome = self.engine.apply_batch(self._items, self.cache)
        self._delta = outcome.delta
        self._applied = self._writes(outcome.delta)
        return Decision(
            events=[(event["message_id"].encode(), dumps(event)) for event in outcome.events],
            rejections=outcome.rejections,
            writes=self._applied,
        )

    def changelog(self, where: Callable[[str], int], last: Mapping[int, int]) -> RoundLog:
        if self._applied is None:
            raise RuntimeError("no applied round")
        return round_log(self._applied, where, last)

    def commit(self) -> None:
        if self._delta is not None:
            self.cache.written(self._delta, self.window)
            self._delta = None

    def clear(self) -> None:
        self.cache.clear()
        self._delta = None
        self._applied = None
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
            if not old.types and meta.types:  # the part's first state: the message lists it
                add(("H", at((MESSAGE, message_id, "")), part_field(part_id), MARK))
            for name, kind in meta.types.items():
                if name not in old.types:
                    add(("H", k, _TYPE_PREFIX + name, kind))
        held_before = self.cache.held
        for key, held in delta.values.items():
            message_id, part_id, name, identity = key
            k = at((VALUES, message_id, part_id))
            # The identity's index follows its holdings: an entry per state it holds a value of.
            if held is None:
                add(("D", k, f"{name}\0{identity}", ""))
                add(("D", at((INDEX, message_id, identity)), index_field(message_id, part_id, name), ""))
            else:
                add(("H", k, f"{name}\0{identity}", encode_held(held).decode()))
                if held_before(key) is None:
                    add(("H", at((INDEX, message_id, identity)),
                         index_field(message_id, part_id, name), MARK))
        for (message_id, part_id, name, encoded), change in delta.tallies.items():
            add(("I", at((TALLY, message_id, part_id)), f"{name}\0{encoded.decode()}", str(change)))
        trimmed: set[str] = set()
        for message_id, response_id in delta.taken:
            add(("L", at((SEEN, message_id, "")), response_id, ""))
            trimmed.add(message_id)
        window = str(self.window)
        for message_id in trimmed:
            add(("T", at((SEEN, message_id, "")), "", window))
        for message_id in delta.deleted:
            add(("H", at((MESSAGE, message_id, "")), DELETED_FIELD, "1"))
        for erasure_id in delta.erasures:
            add(("H", at((ERASURES, "", "")), erasure_id, "1"))
        return Writes(refs, orjson.dumps(ops))
