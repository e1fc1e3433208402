"""The compiled engine over a cache of Redis (the workers' two-phase batch) against the Python
engine: same needs, deltas, events and rejections, with a MemoryStore standing for Redis."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import dumps
from schemas.records import decode_response
from streams.engine.decider import PythonDecider
from streams.engine.engine import Engine
from streams.engine.memory_store import MemoryStore
from streams.engine.native_engine import NativeStateCache
from streams.engine.state import Held, StateNeeds, ValueKey
from tests.unit import strategies as ws
from tests.unit.helpers import add, line

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def load(cache: NativeStateCache | PythonDecider, truth: MemoryStore, needs: StateNeeds,
         whole: bool = False) -> None:
    """What a Redis store would read for `needs`, from the truth; with `whole`, every value of
    each part a needed value is in (as a small values hash is read)."""
    held: dict[ValueKey, Held | None] = {key: truth.held(key) for key in needs.values}
    parts = {key[:2] for key in needs.values} if whole else set()
    for mid, pid in parts:
        for name, by_identity in truth.part_state(mid, pid)[1].items():
            held.update({(mid, pid, name, identity): h for identity, h in by_identity.items()})
    seen = {mid: list(truth._seen.get(mid, {})) for mid, _ in needs.response_ids}
    cache.load({key: truth.part_meta(*key) for key in needs.parts}, held, seen, parts)


def run_both(lines: list[bytes], registry: dict[str, str], sizes: list[int],
             clears: list[bool], verdicts: list[bool] | None = None,
             wholes: list[bool] | None = None) -> NativeStateCache:
    verdicts = verdicts or [True] * len(lines)
    wholes = wholes or [False]
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
        load(cache, truth, needs, wholes[min(turn, len(wholes) - 1)])
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
    wholes = data.draw(st.lists(st.booleans(), min_size=1, max_size=6))
    run_both(lines, registry, sizes, clears, verdicts if data.draw(st.booleans()) else None, wholes)


@pytest.mark.parametrize("decider", ["native", "python"])
def test_a_part_read_whole_needs_no_read_for_a_new_identity(decider: str) -> None:
    engine, truth = Engine(), MemoryStore()
    truth.apply(engine.apply_batch([decode_response(line("r1", add("LWW", "c", 1)))], truth).delta)
    cache = NativeStateCache() if decider == "native" else PythonDecider(Engine(), window=10_000)
    load(cache, truth, cache.decide([line("r2", add("LWW", "c", 2), identity_id="bob")]), whole=True)
    cache.apply()
    cache.commit()
    # A third identity, a state name never used, and alice, known from the whole read.
    needs = cache.decide([line("r3", add("LWW", "c", 3), identity_id="eve"),
                          line("r4", add("Set", "s", "x"), identity_id="eve"),
                          line("r5", add("LWW", "c", 5))])
    assert needs == StateNeeds()
    out = cache.apply()
    # alice 1 -> 5 (her value came with the whole part), eve's first two.
    assert out.delta.tallies == {("m1", "root", "c", b"1"): -1, ("m1", "root", "c", b"5"): 1,
                                 ("m1", "root", "c", b"3"): 1, ("m1", "root", "s", b'"x"'): 1}
    # Without the whole read, alice's value and eve's are asked for.
    fresh = NativeStateCache()
    load(fresh, truth, fresh.decide([line("r2", add("LWW", "c", 2), identity_id="bob")]))
    fresh.apply()
    fresh.commit()
    assert fresh.decide([line("r5", add("LWW", "c", 5))]).values == {("m1", "root", "c", "alice")}


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
    cache = NativeStateCache()
    cache.decide([line("r1", add("LWW", "c", 1))])
    cache.apply()
    with pytest.raises(RuntimeError):
        cache.decide([line("r2", add("LWW", "c", 1))])
    cache.clear()
    with pytest.raises(RuntimeError):
        cache.commit()
    assert cache.decide([line("r2", add("LWW", "c", 1))]).parts == {("m1", "root")}
