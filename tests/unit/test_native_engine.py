"""The compiled engine against the Python reference: same summaries, events and rejections,
byte for byte, on random workloads, hostile records and small dedupe windows."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.schemas.codec import dumps_line
from msgstate.schemas.exceptions import ConfigError, ValidationError
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.native_engine import NativeEngine, heap_bytes
from msgstate.streams.engine.replay import replay_lines
from msgstate.workers.tools.hostile import MAKERS, hostile_records
from tests.unit import strategies as ws
from tests.unit.helpers import add, line

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Lines:
    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.rejections: list[bytes] = []
        self.summaries: list[bytes] = []
        self.clipped: list[bytes] = []


def batches(lines: list[bytes], sizes: list[int]) -> list[slice]:
    out, start, turn = [], 0, 0
    while start < len(lines):
        size = sizes[min(turn, len(sizes) - 1)]
        out.append(slice(start, start + size))
        start += size
        turn += 1
    return out


def by_python(lines: list[bytes], registry: dict[str, Any], sizes: list[int], window: int,
              verdicts: list[bool]) -> Lines:
    engine, store, got = Engine(registry), MemoryStore(window), Lines()
    for part in batches(lines, sizes):
        items = [decode_response(raw, authentic=ok)
                 for raw, ok in zip(lines[part], verdicts[part], strict=True)]
        out = engine.apply_batch(items, store)
        store.apply(out.delta)
        got.events += [dumps_line(event) for event in out.events]
        got.rejections += [dumps_line(rejection) for _, rejection in out.rejections]
    got.summaries = [dumps_line(summary) for summary in store.summaries()]
    got.clipped = [dumps_line(summary) for summary in store.summaries(clip=1)]
    return got


def by_native(lines: list[bytes], registry: dict[str, Any], sizes: list[int], window: int,
              verdicts: list[bool]) -> Lines:
    engine, got = NativeEngine(registry, window=window), Lines()
    for part in batches(lines, sizes):
        events, rejections = engine.feed(lines[part], verdicts[part])
        got.events += events
        got.rejections += rejections
    got.summaries = engine.summary_lines()
    got.clipped = engine.summary_lines(clip=1)
    return got


def same(lines: list[bytes], registry: dict[str, Any], sizes: list[int], window: int = 10_000,
         verdicts: list[bool] | None = None) -> None:
    verdicts = verdicts or [True] * len(lines)
    expected = by_python(lines, registry, sizes, window, verdicts)
    got = by_native(lines, registry, sizes, window, verdicts)
    assert got.rejections == expected.rejections
    assert got.events == expected.events
    assert got.summaries == expected.summaries
    assert got.clipped == expected.clipped


@SETTINGS
@given(ws.workloads, ws.registries, st.lists(st.integers(1, 12), min_size=1, max_size=6),
       st.sampled_from([1, 2, 3, 10_000]), st.data())
def test_native_matches_python(lines: list[bytes], registry: dict[str, str], sizes: list[int],
                               window: int, data: st.DataObject) -> None:
    verdicts = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    if data.draw(st.booleans()):
        verdicts = [True] * len(lines)
    same(lines, registry, sizes, window, verdicts)


dense = ws.dense_lines(40, ["Set", "LWWN", "FWW", "LWW"], ["x", "y", 1, True, "é\\\""], 40)


@SETTINGS
@given(dense, st.lists(st.integers(1, 12), min_size=1, max_size=6), st.sampled_from([1, 3, 7]))
def test_dense_workloads_with_small_windows(lines: list[bytes], sizes: list[int],
                                            window: int) -> None:
    same(lines, {}, sizes, window)


# Values of every JSON kind (SPEC v1.1): numbers equal in value but not in kind, floats of any
# magnitude, nesting, keys in any order, and now and then one over a limit.
json_values = st.recursive(
    st.one_of(
        st.booleans(), st.integers(-2, 2), st.sampled_from(["1", "é\\\"", "", 2**63 - 1]),
        st.sampled_from([1.0, -0.0, 0.0, 2.5, -2.5, 1e16, 1e-7, 2.0**62, 2.0**63]),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
    ),
    lambda inner: st.one_of(
        st.lists(st.one_of(inner, st.none()), max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "é", "B"]), st.one_of(inner, st.none()),
                        max_size=3),
    ),
    max_leaves=5,
)
value_heavy_lines = st.builds(
        lambda rid, mid, ident, part, changes: orjson.dumps({
            "id": rid, "message_id": mid, "part_id": part, "identity_id": ident,
            "changes": changes}),
        st.sampled_from([f"r{n}" for n in range(60)]),
        st.sampled_from(["m", "m", "m2"]),
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sampled_from(["root", "p2"]),
        st.lists(
            st.fixed_dictionaries({
                "operation": st.sampled_from(["add", "add", "remove"]),
                "type": st.sampled_from(["Set", "LWWN", "LWW"]),
                "name": st.sampled_from(["s", "t"]),
                "value": st.one_of(json_values, st.sampled_from(
                    [[1, 1.0], {"a": 1, "b": [None, 2.5]}, {"b": [None, 2.5], "a": 1}])),
            }),
            min_size=1, max_size=4,
        ),
    )
value_heavy = st.lists(value_heavy_lines, min_size=1, max_size=40)


@SETTINGS
@given(value_heavy, st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_value_heavy_workloads(lines: list[bytes], sizes: list[int]) -> None:
    same(lines, {}, sizes)


@SETTINGS
@given(value_heavy, ws.capped_registries, st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_capped_states(lines: list[bytes], registry: dict[str, Any],
                       sizes: list[int]) -> None:
    same(lines, registry, sizes)


def test_limits_of_names_and_members() -> None:
    names = [line(f"n{i}", add("LWW", f"name{i}", i)) for i in range(70)]
    members = [line(f"s{i}", add("Set", "tags", f"t{i}")) for i in range(260)]
    same(names + members, {}, [50])


def test_hostile_records() -> None:
    records = hostile_records(40 * len(MAKERS), seed=5)
    same(records, {}, [128])
    same(records, {}, [1])


def test_registry_and_window_are_checked() -> None:
    with pytest.raises(ConfigError):
        NativeEngine({"bad name": "LWW"})
    with pytest.raises(ConfigError):
        NativeEngine({"poll": "Counter"})
    with pytest.raises(ValueError):
        NativeEngine(window=0)
    with pytest.raises(ValidationError):
        NativeEngine().summary_lines(clip=-1)
    with pytest.raises(ValueError):
        NativeEngine().feed([b"{}"], [True, False])


def test_summary_of_one_part_and_counts() -> None:
    engine = NativeEngine()
    assert engine.summary("m1", "root") == MemoryStore().summary("m1", "root")
    engine.feed([line("r1", add("Set", "tags", "a"), add("Set", "tags", "b"), add("LWW", "c", 1))])
    store = MemoryStore()
    store.apply(Engine().apply_batch(
        [decode_response(line("r1", add("Set", "tags", "a"), add("Set", "tags", "b"),
                              add("LWW", "c", 1)))], store).delta)
    assert engine.summary("m1", "root") == store.summary("m1", "root")
    assert engine.summary("m1", "root", clip=0) == store.summary("m1", "root", clip=0)
    assert engine.live_values() == store.live_values() == 3
    assert heap_bytes() > 0


def test_memory_accounting_agrees_with_the_allocator() -> None:
    before = heap_bytes()
    engine = NativeEngine(events=False)
    lines = [line(f"r{i}", add("Set", "tags", f"t{i % 300}"), add("LWW", "c", i),
                  message=f"m{i % 50}", identity=f"u{i % 700}") for i in range(5000)]
    for start in range(0, len(lines), 128):
        engine.feed(lines[start:start + 128])
    held = heap_bytes() - before
    counted = engine.memory_bytes() + engine.dedupe_bytes()
    assert 0.7 * held <= counted <= 1.3 * held
    dedupe = engine.dedupe_bytes()
    engine.forget_response_ids()
    assert engine.dedupe_bytes() == 0
    assert 0.7 * dedupe <= held - (heap_bytes() - before) <= 1.3 * dedupe


@settings(max_examples=100, deadline=None)
@given(ws.workloads)
def test_without_events_versions_still_count(lines: list[bytes]) -> None:
    quiet, loud = NativeEngine(events=False), NativeEngine()
    events, rejections = quiet.feed(lines)
    assert events == []
    assert rejections == loud.feed(lines)[1]
    assert quiet.summary_lines() == loud.summary_lines()


@pytest.mark.parametrize("depth", [64, 65, 300, 1000])
@pytest.mark.parametrize("where", ["value", "extra"])
def test_a_change_nested_too_deep_to_echo_is_an_invalid_record(depth: int, where: str) -> None:
    """A rejection echoes its change, and orjson encodes no deeper than 254 levels: a change
    nested deeper than 64 levels makes the whole record invalid, in both engines, never a crash.
    `extra`: deep in an unknown field of a change that the rules then refuse (type_mismatch)."""
    nested = b"[" * (depth - 1) + b"]" * (depth - 1)
    first = orjson.dumps({"id": "r0", "message_id": "m", "identity_id": "u", "changes": [
        {"operation": "add", "type": "LWW", "name": "x", "value": 1}]})
    if where == "value":
        change = b'{"operation":"add","type":"Set","name":"x","value":' + nested + b"}"
    else:
        change = b'{"operation":"add","type":"Set","name":"x","value":"a","deep":' + nested + b"}"
    record = b'{"id":"r1","message_id":"m","identity_id":"u","changes":[' + change + b"]}"
    lines = {}
    for engine in ("python", "native"):
        rejected: list[bytes] = []
        summaries = replay_lines([first, record], engine=engine, on_rejection=rejected.append)
        lines[engine] = (summaries, rejected)
    assert lines["native"] == lines["python"]
    (refused,) = [orjson.loads(line) for line in lines["python"][1]]
    if depth <= 64:
        assert refused["change"] is not None and refused["change_index"] == 0
    else:
        assert refused["reason"] == "invalid" and refused["change"] is None
        assert refused["detail"] == "change 0 is nested deeper than 64 levels"


# Deletions and erasures (SPEC section 3a), good and bad, among the responses.
removal_lines = st.one_of(
    st.builds(
        lambda rid, mid, ident, status: orjson.dumps({
            "kind": "delete_message", "id": rid, "message_id": mid, "identity_id": ident,
            "status_text": status}),
        st.sampled_from(["d1", "d2", "r1"]), st.sampled_from(["m", "m2", "m3"]),
        st.sampled_from(["a", "mod"]), st.sampled_from([None, "removed"])),
    st.builds(
        lambda rid, ident: orjson.dumps({"kind": "erase_identity", "id": rid, "identity_id": ident}),
        st.sampled_from(["e1", "e2", "r1"]), st.sampled_from(["a", "b", "c", "z"])),
    st.sampled_from([
        b'{"kind":null,"id":"x","message_id":"m","identity_id":"a"}',
        b'{"kind":"Delete","id":"x","message_id":"m","identity_id":"a"}',
        b'{"kind":["delete_message"],"id":"x","message_id":"m","identity_id":"a"}',
        b'{"kind":"delete_message","id":"x","identity_id":"a"}',
        b'{"kind":"erase_identity","id":"","identity_id":"a"}',
        b'{"kind":"erase_identity","id":"e3","identity_id":"a","sent_at":1.5}',
        b'{"kind":"delete_message","id":"d3","message_id":"m","identity_id":"a","status_text":7}',
        b'{"kind":"response","id":"r99","message_id":"m","identity_id":"a","changes":'
        b'[{"operation":"add","type":"Set","name":"s","value":1}]}',
    ]),
)


@SETTINGS
@given(st.lists(st.one_of(value_heavy_lines, value_heavy_lines, removal_lines), min_size=1,
                max_size=40),
       ws.capped_registries | st.just({}), st.lists(st.integers(1, 12), min_size=1, max_size=6),
       st.data())
def test_deletions_and_erasures(lines: list[bytes], registry: dict[str, Any], sizes: list[int],
                                data: st.DataObject) -> None:
    verdicts = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    if data.draw(st.booleans()):
        verdicts = [True] * len(lines)
    same(lines, registry, sizes, verdicts=verdicts)
