"""The compiled engine over a cache of Redis (the workers' two-phase batch) against the Python
engine: same needs, deltas, events and rejections, with a MemoryStore standing for Redis."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import dumps
from schemas.records import decode_response
from streams.engine import Engine
from streams.memory_store import MemoryStore
from streams.native_engine import NativeStateCache
from streams.state import Held, StateNeeds, ValueKey
from tests.unit import strategies as ws
from tests.unit.helpers import add, line

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load(cache: NativeStateCache, truth: MemoryStore, needs: StateNeeds) -> None:
    """What a Redis store would read for `needs`, from the truth."""
    held: dict[ValueKey, Held | None] = {key: truth.held(key) for key in needs.values}
    seen = {mid: list(truth._seen.get(mid, {})) for mid, _ in needs.response_ids}
    cache.load({key: truth.part_meta(*key) for key in needs.parts}, held, seen)


def run_both(lines: list[bytes], registry: dict[str, str], sizes: list[int],
             clears: list[bool], verdicts: list[bool] | None = None) -> NativeStateCache:
    verdicts = verdicts or [True] * len(lines)
    engine, truth = Engine(registry), MemoryStore()
    cache = NativeStateCache(registry)
    start = turn = 0
    while start < len(lines):
        size = sizes[min(turn, len(sizes) - 1)]
        values, authentic = lines[start:start + size], verdicts[start:start + size]
        items = [decode_response(raw, authentic=ok) for raw, ok in zip(values, authentic, strict=True)]
        expected = engine.apply_batch(items, truth)

        needs = cache.decide(values, authentic)
        full = engine.needs(items)
        # Only keys the batch reads, and every one the cache does not hold.
        assert needs.parts <= full.parts and needs.values <= full.values
        assert needs.response_ids <= full.response_ids
        load(cache, truth, needs)
        got = cache.apply()
        assert got.delta == expected.delta
        assert got.events == [(e["message_id"].encode(), dumps(e)) for e in expected.events]
        assert got.rejections == expected.rejections
        responses = [(item.message_id, item.id) if not isinstance(item, dict) else None
                     for item in items]
        assert [responses[i] for i in got.taken_at] == expected.delta.taken
        for key in got.delta.parts:
            assert got.part_meta(*key) == truth.part_meta(*key)
        truth.apply(expected.delta)
        if clears[min(turn, len(clears) - 1)]:
            cache.clear()  # the write's fate unknown: start again from Redis
        else:
            cache.commit()
        start += size
        turn += 1
    return cache


@SETTINGS
@given(ws.workloads, ws.registries, st.lists(st.integers(1, 12), min_size=1, max_size=6),
       st.lists(st.booleans(), min_size=1, max_size=6), st.data())
def test_cache_matches_the_python_engine(lines: list[bytes], registry: dict[str, str],
                                         sizes: list[int], clears: list[bool],
                                         data: st.DataObject) -> None:
    verdicts = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    run_both(lines, registry, sizes, clears, verdicts if data.draw(st.booleans()) else None)


def test_a_warm_cache_needs_nothing() -> None:
    first = [line("r1", add("LWW", "c", 1), add("Set", "s", "a"))]
    cache = run_both(first, {}, [1], [False])
    needs = cache.decide([line("r2", add("LWW", "c", 2), add("Set", "s", "b"))])
    assert needs == StateNeeds()
    out = cache.apply()
    assert out.delta.values[("m1", "root", "c", "alice")] == b"2"
    assert out.delta.tallies == {("m1", "root", "c", b"1"): -1, ("m1", "root", "c", b"2"): 1,
                                 ("m1", "root", "s", b'"b"'): 1}
    cache.commit()


def test_an_applied_batch_must_be_committed_or_cleared() -> None:
    import pytest

    cache = NativeStateCache()
    cache.decide([line("r1", add("LWW", "c", 1))])
    cache.apply()
    with pytest.raises(RuntimeError):
        cache.decide([line("r2", add("LWW", "c", 1))])
    cache.clear()
    with pytest.raises(RuntimeError):
        cache.commit()
    assert cache.decide([line("r2", add("LWW", "c", 1))]).parts == {("m1", "root")}
