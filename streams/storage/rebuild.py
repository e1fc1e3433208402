"""What the state changelog (streams/rounds/changelog.py) says Redis holds, as Redis commands.

`ChangelogState` takes the records of `msgstate.state` in order, the latest per key winning as
compaction would keep it; `restore_commands` turns one input partition's into the commands that
make its keys hold exactly that: each logged key is emptied and written again, tallies and the
identity index are made from the values and each message's part ids from its metas (the
changelog does not log them), each dedupe memory keeps its newest `window` ids, the partition's
outbox is dropped (the changelog holds what its entries held) and its fence moves to the offset
the changelog is complete up to, last, so that an interrupted restore is done again whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import orjson

from msgstate.streams.storage.layout import (
    INDEX,
    MARK,
    MESSAGE,
    META,
    SEEN,
    TALLY,
    TYPE_FIELD_PREFIX,
    VALUES,
    Keys,
    decode_held,
    index_field,
    part_field,
)

# (kind, message id, part id) of a logged key, as a `KeyRef`
Ref = tuple[str, str, str]
_TYPE = TYPE_FIELD_PREFIX.decode()


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class SetFields:
    key: str
    fields: dict[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Push:
    key: str
    items: list[bytes]


@dataclass(frozen=True, slots=True)
class SetFence:
    """Only the fence's offset: a token there stays (tokens only grow)."""

    key: str
    offset: int


Command = Delete | SetFields | Push | SetFence


@dataclass(slots=True)
class PartitionState:
    """One input partition's changelog: its latest record per key."""

    complete: int = -1  # the changelog is complete up to this input offset; -1: no round logged
    hashes: dict[Ref, dict[str, bytes | None]] = field(default_factory=dict)  # None: gone
    # message -> the key id of each record of its dedupe ids -> (offset, ids); None: gone
    ids: dict[str, dict[str, tuple[int, list[str]] | None]] = field(default_factory=dict)

    def values(self) -> int:
        """Live value fields (for the report)."""
        return sum(1 for (kind, _, _), fields in self.hashes.items() if kind == VALUES
                   for value in fields.values() if value is not None)


@dataclass(slots=True)
class ChangelogState:
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    unreadable: int = 0  # records whose key or value is not the changelog's
    records: int = 0

    def take(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the changelog, in its partition's order."""
        self.records += 1
        try:
            item = orjson.loads(key or b"")
            partition = item[0]
            state = self.partitions.get(partition)
            if state is None:
                state = self.partitions[partition] = PartitionState()
            if len(item) == 1:
                if value is not None:
                    state.complete = int(value)
                return
            _, kind, message_id, part_id, name = item
            if kind == SEEN:
                state.ids.setdefault(message_id, {})[name] = None if value is None else _taken(value)
            else:
                state.hashes.setdefault((kind, message_id, part_id), {})[name] = value
        except (ValueError, TypeError, IndexError, AttributeError):
            self.unreadable += 1


def _taken(value: bytes) -> tuple[int, list[str]]:
    """An ids record's value `[offset, id, ...]`: the round's offset and the ids in order."""
    offset, *ids = orjson.loads(value)
    if type(offset) is not int or not ids or not all(isinstance(rid, str) for rid in ids):
        raise ValueError("not a changelog ids record")
    return offset, ids


def tally_of(values: dict[str, bytes | None], types: Mapping[str, bytes | None]
             ) -> dict[bytes, bytes]:
    """A part's tally hash, counted from its values hash (the engine's counts: a Set counts each
    member, another kind its value); `types` is the part's meta hash ("t:<name>" -> type)."""
    counts: Counter[bytes] = Counter()
    for name_identity, held in values.items():
        if held is None:
            continue
        state = name_identity.partition("\0")[0]
        name = state.encode() + b"\0"
        kind = types.get(TYPE_FIELD_PREFIX.decode() + state) or b""
        decoded = decode_held(held, kind.decode())
        if isinstance(decoded, bytes):
            counts[name + decoded] += 1
        else:
            for member in decoded:
                counts[name + member] += 1
    return {f: b"%d" % n for f, n in counts.items()}


def restore_commands(keys: Keys, partition: int, state: PartitionState, window: int
                     ) -> Iterator[Command]:
    """The commands that restore one input partition from its changelog (see the module)."""
    def key(ref: Ref) -> str:
        return keys.state(ref, partition)

    # Several refs may name one key (an identity's index: a ref per message it holds values
    # in): each key is emptied once and written with all of its fields.
    hashes: dict[str, dict[bytes, bytes]] = {}
    mark = MARK.encode()
    for ref, fields in state.hashes.items():
        live = hashes.setdefault(key(ref), {})
        live.update({f.encode(): v for f, v in fields.items() if v is not None})
        kind, message_id, part_id = ref
        if kind == META and any(f.startswith(_TYPE) and v is not None for f, v in fields.items()):
            # A part with a state is listed in its message's hash.
            listed = hashes.setdefault(key((MESSAGE, message_id, "")), {})
            listed[part_field(part_id).encode()] = mark
        if kind == VALUES:
            # An entry in an identity's index per state it holds; an identity whose value is
            # gone has its index key emptied too.
            for name_identity, held in fields.items():
                name, _, identity = name_identity.partition("\0")
                index = hashes.setdefault(key((INDEX, message_id, identity)), {})
                if held is not None:
                    index[index_field(message_id, part_id, name).encode()] = mark
            tally = (TALLY, message_id, part_id)
            yield Delete(key(tally))
            counts = tally_of(fields, state.hashes.get((META, message_id, part_id), {}))
            if counts:
                yield SetFields(key(tally), counts)
        elif kind == META and (VALUES, message_id, part_id) not in state.hashes:
            yield Delete(key((TALLY, message_id, part_id)))  # no value left, no count
    for target, live in hashes.items():
        yield Delete(target)
        if live:
            yield SetFields(target, live)
    for message_id, taken in state.ids.items():
        ref = (SEEN, message_id, "")
        yield Delete(key(ref))
        live_ids = sorted(((offset, n), rid) for offset, ids in filter(None, taken.values())
                          for n, rid in enumerate(ids))
        if live_ids:
            yield Push(key(ref), [rid.encode() for _, rid in live_ids[-window:]])
    yield Delete(keys.outbox(partition))
    yield SetFence(keys.fence(partition), state.complete)
