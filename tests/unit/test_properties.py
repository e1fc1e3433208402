"""Property tests: the engine against the naive model, and batching that changes nothing."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.replay import replay
from msgstate.streams.engine.summary import count_tallies
from tests.unit import strategies as ws
from tests.unit.naive_model import NaiveModel
from tests.unit.schema_check import check
from tests.unit.test_memory_store import StrictView

SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def canon(records: list[dict[str, Any]], *, drop: tuple[str, ...] = ()) -> list[bytes]:
    """Records as bytes, so 1, 1.0 and true never compare equal."""
    return [
        orjson.dumps({k: v for k, v in r.items() if k not in drop}, option=orjson.OPT_SORT_KEYS)
        for r in records
    ]


class Result:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []

    def same_as(self, other: Result, *, drop: tuple[str, ...] = ()) -> None:
        assert canon(self.summaries) == canon(other.summaries)
        assert canon(self.events) == canon(other.events)
        assert canon(self.rejections, drop=drop) == canon(other.rejections, drop=drop)


def by_engine(lines: list[bytes], registry: dict[str, str], sizes: list[int]) -> Result:
    """Through Engine + MemoryStore, in batches of the given sizes (the last one repeats)."""
    engine, store, result = Engine(registry), MemoryStore(), Result()
    kept_tallies: dict[tuple[str, str, str, bytes], int] = {}
    start, turn = 0, 0
    while start < len(lines):
        size = sizes[min(turn, len(sizes) - 1)]
        items = [decode_response(raw) for raw in lines[start:start + size]]
        before = store.summaries()
        # Reads stay within needs(), and the view is not mutated.
        out = engine.apply_batch(items, StrictView(store, engine.needs(items)))
        assert store.summaries() == before
        store.apply(out.delta)
        for key, n in out.delta.tallies.items():
            assert n != 0
            kept_tallies[key] = kept_tallies.get(key, 0) + n
        result.events += out.events
        result.rejections += [rejection for _, rejection in out.rejections]
        assert [index for index, _ in out.rejections] == sorted(i for i, _ in out.rejections)
        start += size
        turn += 1
    result.summaries = store.summaries()
    # The tally deltas a persistent store would keep add up to the counted tallies.
    counted = {
        (mid, pid, name, value): n
        for (mid, pid), part in store._parts.items()
        for name, held_by in part.holdings.items()
        for value, n in count_tallies(held_by).items()
    }
    assert {k: n for k, n in kept_tallies.items() if n} == counted
    return result


def by_model(lines: list[bytes], registry: dict[str, str]) -> Result:
    model, result = NaiveModel(registry), Result()
    for raw in lines:
        model.feed(raw)
    result.events, result.rejections, result.summaries = (
        model.events, model.rejections, model.summaries())
    return result


batch_sizes = st.lists(st.integers(1, 12), min_size=1, max_size=6)


@SETTINGS
@given(ws.workloads, ws.registries, batch_sizes)
def test_engine_matches_the_naive_model(
    lines: list[bytes], registry: dict[str, str], sizes: list[int]
) -> None:
    engine = by_engine(lines, registry, sizes)
    engine.same_as(by_model(lines, registry), drop=("detail",))
    for event in engine.events:
        check("summary-change-event", event)
    for summary in engine.summaries:
        check("response-summary", summary)
    for rejection in engine.rejections:
        check("rejection", rejection)
        assert isinstance(rejection["detail"], str) and rejection["detail"]


@SETTINGS
@given(ws.workloads, ws.registries, batch_sizes)
def test_any_batching_gives_the_same_result(
    lines: list[bytes], registry: dict[str, str], sizes: list[int]
) -> None:
    one_by_one = by_engine(lines, registry, [1])
    by_engine(lines, registry, sizes).same_as(one_by_one)
    by_engine(lines, registry, [len(lines)]).same_as(one_by_one)


@SETTINGS
@given(ws.workloads, st.integers(1, 50))
def test_replay_matches_the_engine(lines: list[bytes], batch: int) -> None:
    expected = by_engine(lines, {}, [1])
    got = Result()
    store = replay(lines, on_event=got.events.append, on_rejection=got.rejections.append,
                   batch=batch)
    got.summaries = store.summaries()
    got.same_as(expected)


dense_lines = ws.dense_lines(30, ["Set", "LWWN", "FWW"], ["x", "y", 1, True], 30)


@SETTINGS
@given(dense_lines, batch_sizes)
def test_dense_workloads_match_the_naive_model(lines: list[bytes], sizes: list[int]) -> None:
    by_engine(lines, {}, sizes).same_as(by_model(lines, {}), drop=("detail",))
