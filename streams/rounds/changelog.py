"""The state changelog (SPEC section 7a): a round's writes as records of the compacted topic
`msgstate.state`, whose latest record per key is the whole truth for that key.

Derived from the round's `Writes` (streams/storage/protocol.py), so both deciders log alike
and any hash a round writes rides along (`round_records`, the reference; the compiled core
makes the same records from its journal in one pass, native/src/changelog.rs). Keys are
compact JSON arrays, the first item the input partition whose state they are (the record goes
to that partition of the changelog):

    [p, kind, message, part, field]  -> the field's value; a tombstone once the field is gone
                                        (kinds with hash fields: meta, vals, ...)
    [p, "ids", message, "", id]      -> [offset, id1, ..., id]: the response ids the message's
                                        dedupe memory took in the round ending at offset, in
                                        order, keyed by the last; a tombstone once that one
                                        left the window (and so every id before it)
    [p]                              -> "<offset>": partition p's changelog is complete up to
                                        that input offset (the round's last record)

Tallies, the identity index and a message's part ids are not logged: a rebuild makes them again
from the values and the metas (they would add a record per response). A round logs each key once, its
last write, and a message's ids once (one record however many responses it took). Ids that
leave the dedupe window are tombstoned after the round is persisted (the store says which,
`Evicted`), each under its own key: the one that keys a record removes it, the others name no
record. A record whose first ids left the window but not its last keeps them, and one whose
tombstone was lost to a crash stays: a rebuild drops both, since it keeps each message's newest
`window` ids by their order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import NamedTuple

import orjson

from msgstate.streams.rounds.outbox import STATE, OutRecord, pack_frames
from msgstate.streams.storage.layout import INDEX, MESSAGE, PART_FIELD_PREFIX, SEEN, TALLY, KeyRef
from msgstate.streams.storage.protocol import Evicted, Writes

# Kinds a rebuild recomputes instead of reading them from the changelog (and, of a message's
# hash, its part ids).
DERIVED = frozenset({TALLY, INDEX})
# An OutRecord made without the Python-level constructor of a NamedTuple: a round makes several
# per response.
_record = partial(tuple.__new__, OutRecord)


# Changelog partition -> its records to produce, in order: (key, value; None for a tombstone).
Logged = dict[int, list[tuple[bytes, bytes | None]]]


class RoundLog(NamedTuple):
    """A round's changelog records, ready to go."""

    frames: dict[int, bytes]  # round partition -> its records as outbox frames (`pack_frames`)
    records: Logged  # the same records by the changelog partition their key names


def state_key(partition: int, ref: KeyRef, field: str) -> bytes:
    return orjson.dumps([partition, *ref, field])


def marker_key(partition: int) -> bytes:
    return orjson.dumps([partition])


def round_records(writes: Writes, where: Callable[[str], int],
                  last: Mapping[int, int]) -> dict[int, list[OutRecord]]:
    """A round's changelog records by the round partition whose outbox keeps them, each
    partition's completion marker last; `where` finds a message's partition (its state's keys,
    and its records' first item), `last` is each round partition's last offset."""
    # Per state key: its records' key head `[p, kind, message, part,` (None for a derived kind)
    # and the outbox that carries them. A message whose records were keyed otherwise lives in
    # a partition outside the round: any outbox of the round will do (as for its events).
    anywhere = next(iter(last))
    heads: list[bytes | None] = [None]  # key indexes count from 1
    outbox = [anywhere]
    for ref in writes.keys:
        p = where(ref[1])
        heads.append(None if ref[0] in DERIVED else orjson.dumps([p, *ref])[:-1] + b",")
        outbox.append(p if p in last else anywhere)
    ops = orjson.loads(writes.ops)
    latest: dict[tuple[int, str], str] = {}  # (key index, field) -> value ("": gone), last wins
    taken: dict[int, list[str]] = {}  # key index of a dedupe memory -> ids pushed, in order
    for op, k, field, value in zip(ops[0::4], ops[1::4], ops[2::4], ops[3::4], strict=True):
        if op == "H":
            latest[k, field] = value
        elif op == "D":
            latest[k, field] = ""
        elif op == "L" and writes.keys[k - 1][0] == SEEN:
            taken.setdefault(k, []).append(field)
        elif op != "T" and not (op == "I" and heads[k] is None):
            raise ValueError(f"the changelog cannot log op {op!r} on {writes.keys[k - 1][0]!r} keys")
    records: dict[int, list[OutRecord]] = {p: [] for p in last}
    dump = orjson.dumps
    for (k, field), value in latest.items():
        head = heads[k]
        if head is not None and not (field.startswith(PART_FIELD_PREFIX)
                                     and writes.keys[k - 1][0] == MESSAGE):
            records[outbox[k]].append(_record((STATE, head + dump(field) + b"]", value.encode())))
    for k, ids in taken.items():
        head, carrier = heads[k], outbox[k]
        if head is not None:
            records[carrier].append(_record((STATE, head + dump(ids[-1]) + b"]",
                                             dump([last[carrier], *ids]))))
    for p, offset in last.items():
        records[p].append(OutRecord(STATE, marker_key(p), b"%d" % offset))
    return records


def changelog_partition(key: bytes) -> int:
    """The changelog partition of a record: its key's first item."""
    return int(orjson.loads(key)[0])


def by_partition(records: Iterable[OutRecord]) -> tuple[list[OutRecord], Logged]:
    """The records other than the changelog's, and the changelog's by partition."""
    others: list[OutRecord] = []
    logged: Logged = {}
    for record in records:
        if record.kind == STATE:
            logged.setdefault(changelog_partition(record.key), []).append(
                (record.key, record.value or None))
        else:
            others.append(record)
    return others, logged


def round_log(writes: Writes, where: Callable[[str], int], last: Mapping[int, int]) -> RoundLog:
    """`round_records` ready to go."""
    records = round_records(writes, where, last)
    return RoundLog({p: pack_frames(logged) for p, logged in records.items()},
                    by_partition(r for logged in records.values() for r in logged)[1])


def evicted_records(writes: Writes, evicted: Evicted, where: Callable[[str], int]
                    ) -> Iterable[tuple[int, bytes]]:
    """(changelog partition, key) of a tombstone for each response id that left a dedupe
    window in a persisted round."""
    for k, ids in evicted:
        ref = writes.keys[k - 1]
        p = where(ref[1])
        for rid in ids:
            yield p, state_key(p, ref, rid.decode())
