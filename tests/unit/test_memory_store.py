"""The in-memory store: a complete StateView; bounded dedupe memory; the engine's contract."""

from __future__ import annotations

import orjson
import pytest

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.state import (
    Held,
    Holdings,
    PartMeta,
    StateDelta,
    StateKey,
    StateNeeds,
    TallyKey,
    ValueKey,
)
from tests.unit.helpers import add, line


def test_dedupe_remembers_at_least_the_window_and_stays_bounded() -> None:
    store = MemoryStore(window=10)
    for n in range(100):
        store.apply(StateDelta(taken=[("m", f"r{n}")]))
        # The last 10 are always remembered.
        assert all(store.seen("m", f"r{k}") for k in range(max(0, n - 9), n + 1))
    assert not store.seen("m", "r0")
    assert not store.seen("other", "r99")
    assert len(store._seen["m"]) < 20  # bounded: at most twice the window


def test_default_window_is_10000() -> None:
    assert DEDUPE_WINDOW == 10_000
    store = MemoryStore()
    store.apply(StateDelta(taken=[("m", f"r{n}") for n in range(DEDUPE_WINDOW + 1)]))
    assert all(store.seen("m", f"r{n}") for n in range(1, DEDUPE_WINDOW + 1))
    with pytest.raises(ValueError):
        MemoryStore(window=0)


def test_a_duplicate_is_caught_across_10000_later_responses() -> None:
    engine = Engine()
    store = MemoryStore()
    first = [line("r0", add("LWW", "c", 0))]
    later = [line(f"r{n}", add("LWW", "c", n)) for n in range(1, DEDUPE_WINDOW)]
    for batch in (first, later, [line("r0", add("LWW", "c", "again"))]):
        out = engine.apply_batch([decode_response(raw) for raw in batch], store)
        store.apply(out.delta)
    assert [r["reason"] for _, r in out.rejections] == ["duplicate"]


def test_apply_batch_does_not_mutate_the_view() -> None:
    engine = Engine()
    store = MemoryStore()
    out = engine.apply_batch([decode_response(line("r1", add("Set", "s", "a")))], store)
    store.apply(out.delta)
    before = store.summaries()
    meta = store.part_meta("m1", "root")
    types = dict(meta.types)
    batch = [
        decode_response(line("r2", add("Set", "s", "b"), add("LWW", "new", 1))),
        decode_response(line("r3", add("Set", "s", "c"))),
    ]
    out = engine.apply_batch(batch, store)
    assert store.summaries() == before
    assert store.part_meta("m1", "root").types == types == meta.types
    assert not store.seen("m1", "r2")
    assert out.delta.parts[("m1", "root")] == PartMeta(3, {"s": "Set", "new": "LWW"})
    assert out.delta.values[("m1", "root", "s", "alice")] == (b'"a"', b'"b"', b'"c"')
    assert out.delta.taken == [("m1", "r2"), ("m1", "r3")]
    assert out.delta.tallies == {
        ("m1", "root", "s", b'"b"'): 1,
        ("m1", "root", "s", b'"c"'): 1,
        ("m1", "root", "new", b"1"): 1,
    }


class StrictView:
    """A view that fails on any read outside the batch's needs."""

    def __init__(self, store: MemoryStore, needs: StateNeeds) -> None:
        self.store = store
        self.needs = needs
        # What a whole message's parts or an identity's index let the engine read further.
        self.whole_parts: set[tuple[str, str]] = set()
        self.indexed: set[ValueKey] = set()

    def part_meta(self, message_id: str, part_id: str) -> PartMeta:
        assert (message_id, part_id) in self.needs.parts | self.whole_parts | {
            key[:2] for key in self.indexed
        }
        return self.store.part_meta(message_id, part_id)

    def held(self, key: ValueKey) -> Held | None:
        assert key in self.needs.values | self.indexed
        return self.store.held(key)

    def seen(self, message_id: str, response_id: str) -> bool:
        assert (message_id, response_id) in self.needs.response_ids
        return self.store.seen(message_id, response_id)

    def deleted(self, message_id: str) -> bool:
        assert message_id in self.needs.deleted
        return self.store.deleted(message_id)

    def tally_count(self, key: TallyKey) -> int:
        assert key[:3] in self.needs.capped
        return self.store.tally_count(key)

    def distinct(self, key: StateKey) -> int:
        assert key in self.needs.capped
        return self.store.distinct(key)

    def parts_of(self, message_id: str) -> list[str]:
        assert message_id in self.needs.whole
        self.whole_parts.update((message_id, pid) for pid in self.store.parts_of(message_id))
        return self.store.parts_of(message_id)

    def part_holdings(self, message_id: str, part_id: str) -> Holdings:
        assert (message_id, part_id) in self.whole_parts
        return self.store.part_holdings(message_id, part_id)

    def identity_index(self, identity_id: str) -> list[StateKey]:
        assert identity_id in self.needs.identities
        index = self.store.identity_index(identity_id)
        self.indexed.update((*where, identity_id) for where in index)
        return index

    def erasure_taken(self, erasure_id: str) -> bool:
        assert erasure_id in self.needs.erasures
        return self.store.erasure_taken(erasure_id)


def test_needs_lists_every_key_the_batch_reads() -> None:
    engine = Engine({"cap": {"type": "Set", "max_values": 1}})
    store = MemoryStore()
    reasons: list[str] = []
    for batch in (
        [line("r1", add("LWW", "c", 1), add("Set", "s", "x"))],
        [
            line("r2", add("LWW", "c", 2), {"bad": 1}, identity="bob"),
            b"not json",
            line("r3", add("Set", "s", "y"), part="p"),
            line("r1", add("LWW", "c", 9)),
            line("r4", add("LWW", "c", 3), add("LWW", "c", 4)),
        ],
        [
            line("r5", add("Set", "cap", "x"), message="m2"),
            orjson.dumps({"kind": "erase_identity", "id": "e1", "identity_id": "bob"}),
            line("r6", add("Set", "cap", "y"), message="m2", identity="bob"),
        ],
        [
            orjson.dumps({"kind": "delete_message", "id": "d1", "message_id": "m2",
                          "identity_id": "mod"}),
            line("r7", add("Set", "cap", "z"), message="m2"),
            orjson.dumps({"kind": "erase_identity", "id": "e2", "identity_id": "alice"}),
        ],
    ):
        items = [decode_response(raw) for raw in batch]
        out = engine.apply_batch(items, StrictView(store, engine.needs(items)))
        reasons += [rejection["reason"] for _, rejection in out.rejections]
        store.apply(out.delta)
    # r2's bad change, b"not json", r1 again; r6 over the cap; r7 after the deletion
    assert reasons == ["invalid_change", "malformed", "duplicate", "limit_exceeded",
                       "message_deleted"]
    assert store.summary("m1", "root")["states"]["c"]["values"] == {}  # both erased
    assert store.summary("m2", "root")["deleted"] is True
