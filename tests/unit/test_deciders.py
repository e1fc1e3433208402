"""Both deciders (the Python reference and the compiled one) against the engine on a
MemoryStore: same events and rejections, and writes that leave the store holding exactly the
truth's state, round after round, with the cache kept or dropped, parts read whole or field by
field."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.schemas.codec import dumps
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import (
    INDEX,
    MARK,
    MESSAGE,
    TALLY,
    Keys,
    decode_meta,
    encode_held,
    tally_field,
    value_field,
)
from msgstate.streams.storage.memory import MemoryRoundStore
from tests.unit import strategies as ws
from tests.unit.helpers import add, line, remove

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WINDOW = 10_000
# The rounds here are one partition's (of one), as a round holding an erasure is.
HOME = {b"": 0}


def deciders(registry: dict[str, Any], whole: int, window: int = WINDOW) -> dict[str, Decider]:
    return {"python": PythonDecider(Engine(registry), window=window, whole_part_fields=whole),
            "compiled": CompiledDecider(registry, window=window, whole_part_fields=whole)}


def round_trip(decider: Decider, store: MemoryRoundStore, values: list[bytes],
               authentic: list[bool] | None, keep: bool) -> tuple[list[tuple[bytes, bytes]], list[object]]:
    async def go() -> tuple[list[tuple[bytes, bytes]], list[object]]:
        read = decider.decide(values, authentic)
        while read is not None:
            read = decider.load(await store.read(read, HOME))
        decision = decider.apply()
        await store.persist([], decision.writes, HOME)
        if keep:
            decider.commit()
        else:
            decider.clear()  # the write's fate unknown: start again from the store
        return decision.events, list(decision.rejections)

    return asyncio.run(go())


def assert_holds(store: MemoryRoundStore, truth: MemoryStore) -> None:
    """The store's hashes are the truth's state, as the key layout keeps it."""
    keys = store.keys
    for mid, pid in truth.parts():
        meta, holdings, _ = truth.part_state(mid, pid)
        assert decode_meta(store.hashes.get(keys.meta(mid, pid), {})) == meta
        values = {value_field(name, ident): encode_held(held)
                  for name, by_ident in holdings.items() for ident, held in by_ident.items()}
        assert store.hashes.get(keys.values(mid, pid), {}) == values
        counts: Counter[bytes] = Counter()
        for name, by_ident in holdings.items():
            for held in by_ident.values():
                for value in (held if isinstance(held, tuple) else (held,)):
                    counts[tally_field(name, value)] += 1
        assert store.hashes.get(keys.tally(mid, pid), {}) == {f: str(n).encode() for f, n in counts.items()}


ROUNDS = (st.lists(st.integers(1, 12), min_size=1, max_size=6),
          st.lists(st.booleans(), min_size=1, max_size=6), st.sampled_from([1, 3, 10_000]),
          st.sampled_from([2, WINDOW]), st.data())


@SETTINGS
@given(ws.workloads, ws.registries, *ROUNDS)
def test_both_deciders_write_the_engines_state(lines: list[bytes], registry: dict[str, Any],
                                               sizes: list[int], keeps: list[bool], whole: int,
                                               window: int, data: st.DataObject) -> None:
    """With a short dedupe window the two deciders still write alike (the truth, which may
    remember more ids than the window, is then not compared)."""
    both_write_the_engines_state(lines, registry, sizes, keeps, whole, window, data)


@SETTINGS
@given(ws.capped_workloads, ws.capped_registries, *ROUNDS)
def test_both_deciders_hold_caps_as_the_engine(lines: list[bytes], registry: dict[str, Any],
                                               sizes: list[int], keeps: list[bool], whole: int,
                                               window: int, data: st.DataObject) -> None:
    """Caps that fill, within a round and across rounds, the cache kept or dropped."""
    both_write_the_engines_state(lines, registry, sizes, keeps, whole, window, data)


def both_write_the_engines_state(lines: list[bytes], registry: dict[str, Any], sizes: list[int],
                                 keeps: list[bool], whole: int, window: int,
                                 data: st.DataObject) -> None:
    verdicts = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    signed = data.draw(st.booleans())
    exact = window == WINDOW
    engine, truth = Engine(registry), MemoryStore()
    runs = deciders(registry, whole, window)
    stores = {name: MemoryRoundStore(Keys("t", partitions=1)) for name in runs}
    start = turn = 0
    while start < len(lines):
        size = sizes[min(turn, len(sizes) - 1)]
        keep = keeps[min(turn, len(keeps) - 1)]
        values, authentic = lines[start:start + size], verdicts[start:start + size]
        items = [decode_response(raw, authentic=ok) for raw, ok in zip(values, authentic, strict=True)]
        expected = engine.apply_batch(items, truth)
        truth.apply(expected.delta)
        for name, decider in runs.items():
            events, rejections = round_trip(decider, stores[name], values,
                                            authentic if signed else None, keep)
            if not (signed and exact):
                continue
            assert events == [(e["message_id"].encode(), dumps(e)) for e in expected.events], name
            assert rejections == expected.rejections, name
        start += size
        turn += 1
    if signed and exact:
        for store in stores.values():
            assert_holds(store, truth)
    assert stores["python"].hashes == stores["compiled"].hashes
    assert stores["python"].lists == stores["compiled"].lists


@pytest.mark.parametrize("name", ["python", "compiled"])
def test_a_part_read_whole_needs_no_read_for_a_new_identity(name: str) -> None:
    store = MemoryRoundStore()
    round_trip(deciders({}, 10_000)[name], store, [line("r1", add("LWW", "c", 1))], None, True)
    decider = deciders({}, 10_000)[name]
    round_trip(decider, store, [line("r2", add("LWW", "c", 2), identity_id="bob")], None, True)
    # A third identity, a state name never used, and alice, known from the whole read.
    assert decider.decide([line("r3", add("LWW", "c", 3), identity_id="eve"),
                           line("r4", add("Set", "s", "x"), identity_id="eve"),
                           line("r5", add("LWW", "c", 5))]) is None
    decider.apply()
    decider.clear()
    # Read field by field, alice's value is asked for.
    by_field = deciders({}, 0)[name]
    read = by_field.decide([line("r5", add("LWW", "c", 5))])
    assert read is not None and read.value_parts == [("m1", "root")]
    assert read.args[4:6] == [1, b"c\0alice"]


@pytest.mark.parametrize("name", ["python", "compiled"])
def test_a_warm_cache_reads_nothing(name: str) -> None:
    decider, store = deciders({}, 10_000)[name], MemoryRoundStore()
    round_trip(decider, store, [line("r1", add("LWW", "c", 1), add("Set", "s", "a"))], None, True)
    assert decider.decide([line("r2", add("LWW", "c", 2), add("Set", "s", "b"))]) is None
    decider.apply()
    decider.commit()


@pytest.mark.parametrize("name", ["python", "compiled"])
def test_past_its_limit_the_cache_starts_again_counts_it_and_reads_what_it_needs(name: str) -> None:
    registry: dict[str, str] = {}
    decider: Decider = (PythonDecider(Engine(registry), window=WINDOW, limit=5) if name == "python"
                        else CompiledDecider(registry, window=WINDOW, limit=5))
    store, truth = MemoryRoundStore(), MemoryStore()
    engine = Engine(registry)
    for n in range(1, 40):
        values = [line(f"r{n}", add("Set", "s", n % 3), message=f"m{n % 4}")]
        round_trip(decider, store, values, None, True)
        truth.apply(engine.apply_batch([decode_response(v) for v in values], truth).delta)
    assert decider.restarts >= 3
    assert_holds(store, truth)
    assert decider.decide([line("r99", add("Set", "s", 1), message="m1")]) is not None


def test_both_deciders_keep_the_identity_index_and_the_part_ids_alike() -> None:
    """Held equal op by op: an index entry when an identity first holds a value of a state
    (a part id counted in characters), a deletion when it holds none, a part id when a part
    gets its first state; nothing when a held value only changes."""
    rounds = [
        [line("r1", add("LWW", "c", 1), add("Set", "s", "a"), message='m"1', part="pé",
              identity="ann\\x")],
        [line("r2", add("LWW", "c", 2), remove("Set", "s", "a"), message='m"1', part="pé",
              identity="ann\\x")],
    ]
    ops: dict[str, list[list[object]]] = {}
    for name, decider in deciders({}, 10_000).items():
        store = MemoryRoundStore()
        for values in rounds:
            read = decider.decide(values)
            while read is not None:
                read = decider.load(asyncio.run(store.read(read, HOME)))
            writes = decider.apply().writes
            decider.commit()
            asyncio.run(store.persist([], writes, HOME))
            decoded = orjson.loads(writes.ops)
            ops.setdefault(name, []).append(sorted(
                (op, writes.keys[k - 1], field, value) for op, k, field, value
                in zip(decoded[0::4], decoded[1::4], decoded[2::4], decoded[3::4], strict=True)
                if writes.keys[k - 1][0] in (INDEX, MESSAGE)))
    first, second = ops["compiled"]
    assert first == sorted([("H", (MESSAGE, 'm"1', ""), "p:pé", MARK),
                            ("H", (INDEX, 'm"1', "ann\\x"), "c\x002:pém\"1", MARK),
                            ("H", (INDEX, 'm"1', "ann\\x"), "s\x002:pém\"1", MARK)])
    assert second == [("D", (INDEX, 'm"1', "ann\\x"), "s\x002:pém\"1", "")]
    assert ops["compiled"] == ops["python"]


def test_an_applied_batch_must_be_committed_or_cleared() -> None:
    decider = CompiledDecider()
    decider.decide([line("r1", add("LWW", "c", 1))])
    decider.apply()
    with pytest.raises(RuntimeError):
        decider.decide([line("r2", add("LWW", "c", 1))])
    decider.clear()
    with pytest.raises(RuntimeError):
        decider.commit()
    read = decider.decide([line("r2", add("LWW", "c", 1))])
    assert read is not None and read.parts == [("m1", "root")]


def test_the_python_decider_applies_deletions_and_erasures() -> None:
    store = MemoryRoundStore(Keys("t", partitions=1))
    decider = deciders({}, 10_000)["python"]
    events, rejections = round_trip(decider, store, [
        line("r1", add("LWW", "c", 1)),
        line("r2", add("LWW", "c", 2), message="m2"),
        b'{"kind": "erase_identity", "id": "e1", "identity_id": "alice"}',
        b'{"kind": "delete_message", "id": "d1", "message_id": "m2", "identity_id": "mod"}',
        line("r3", add("LWW", "c", 3), message="m2"),
    ], None, True)
    causes = [orjson.loads(event)["cause"] for _, event in events]
    assert causes == ["response", "response", "erase_identity", "erase_identity"]
    assert [(index, r["reason"]) for index, r in rejections] == [(4, "message_deleted")]  # type: ignore[index]
    # The index follows the holdings: alice's is empty.
    assert not any(fields for key, fields in store.hashes.items() if ":idx:" in key)
    assert store.hashes[store.keys.message("m2")] == {b"deleted": b"1", b"p:root": b"1"}


CAPPED: dict[str, Any] = {"reactions": {"type": "Set", "max_values": 3},
                          "pick": {"type": "LWW", "max_values": 2}}


def test_the_compiled_decider_decides_capped_rounds_itself() -> None:
    decider, store = CompiledDecider(CAPPED, window=WINDOW), MemoryRoundStore()
    round_trip(decider, store, [line("r1", add("Set", "reactions", "a"), add("LWW", "pick", 1))],
               None, True)
    # Its cache holds the part it decided (a round handed to the reference leaves it empty).
    assert orjson.loads(decider.summary_line("m1", "root"))["version"] == 1
    # Warm, a capped round reads the part's tally alone, and its cache keeps the round's writes.
    read = decider.decide([line("r2", add("Set", "reactions", "b"), identity="bob")])
    assert read is not None and (read.parts, read.value_parts, read.messages) == ([], [], [])
    assert read.hashes == [(TALLY, "m1", "root")]
    assert decider.load(asyncio.run(store.read(read, HOME))) is None
    decider.apply()
    decider.commit()
    assert orjson.loads(decider.summary_line("m1", "root"))["version"] == 2
    # A round that only removes from a capped state reads no tally.
    assert decider.decide([line("r3", remove("Set", "reactions", "b"), identity="bob")]) is None


def test_identities_racing_for_the_last_distinct_value_are_held_alike() -> None:
    """Many identities add the (cap+1)-th distinct value within a round and across rounds:
    only an add that finds a place is taken, and both deciders write and say the same."""
    racers = [f"u{n}" for n in range(3, 12)]
    rounds = [
        # The cap of 3 filled, and 2 picks.
        [line("r1", add("Set", "reactions", "a"), add("LWW", "pick", "x"), identity="u0"),
         line("r2", add("Set", "reactions", "b"), add("LWW", "pick", "y"), identity="u1"),
         line("r3", add("Set", "reactions", "c"), identity="u2")],
        # u1 frees b; nine identities race for the place, each with a new value; then each adds
        # a held value, which is never over the cap.
        [line("r4", remove("Set", "reactions", "b"), identity="u1"),
         *(line(f"r5{who}", add("Set", "reactions", f"new-{who}"), identity=who) for who in racers),
         *(line(f"r6{who}", add("Set", "reactions", "a"), identity=who) for who in racers),
         # Replacing one's own pick with a third value is over the cap too.
         line("r7", add("LWW", "pick", "z"), identity="u0")],
        # Across rounds: b is held by nobody now, and each new value is refused.
        [line(f"r8{who}", add("Set", "reactions", "b"), identity=who) for who in racers],
        # The winner drops its value: a place again, taken by the first racer of the next round.
        [line("r9", remove("Set", "reactions", "new-u3"), identity="u3")],
        [line(f"rA{who}", add("Set", "reactions", f"late-{who}"), identity=who)
         for who in racers],
    ]
    made: dict[str, list[Any]] = {}
    for name, decider in deciders(CAPPED, 10_000).items():
        store = MemoryRoundStore(Keys("t", partitions=1))
        made[name] = [round_trip(decider, store, values, None, True) for values in rounds]
        made[name].append(store.snapshot())
    assert made["compiled"] == made["python"]
    refused = [[(index, r["reason"], r["detail"]) for index, r in rejections]  # type: ignore[index]
               for _, rejections in made["compiled"][:-1]]
    full = "reactions already holds max_values=3 distinct values in this part"
    assert refused == [
        [],
        [*((at, "limit_exceeded", full) for at in range(2, 10)),
         (19, "limit_exceeded", "pick already holds max_values=2 distinct values in this part")],
        [(at, "limit_exceeded", full) for at in range(9)],
        [],
        [(at, "limit_exceeded", full) for at in range(1, 9)],
    ]
    hashes, _ = made["compiled"][-1]
    tally = hashes[Keys("t", partitions=1).tally("m1", "root")]
    assert {f: n for f, n in tally.items() if f.startswith(b"reactions")} == {
        tally_field("reactions", b'"a"'): b"10", tally_field("reactions", b'"c"'): b"1",
        tally_field("reactions", b'"late-u3"'): b"1"}
