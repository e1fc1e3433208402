"""The hot-path shortcuts give exactly what the careful paths give, on any input.

`_decode_changes` decodes a well-formed change inline and hands anything else
to `decode_change`; `decode_response` tests the whole record in one expression
and lets `_invalid_detail` find the reason. The engine reads a MemoryStore
through `part_state` and any other view through `held` / `seen`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.schemas.records import (
    Change,
    Response,
    _decode_changes,
    _invalid_detail,
    decode_change,
    decode_response,
)
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from tests.unit import strategies as ws
from tests.unit.test_memory_store import StrictView

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# JSON data of every kind, with the look-alikes that Python equates (1, 1.0, True).
json_scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]),
    st.integers(-(2**63), 2**64 - 1),  # all that orjson reads st.sampled_from([1.0, 0.0, -0.5, 1e2]),
    st.sampled_from(["", "1", "true", "red", "é" * 256, "é" * 257, "x" * 1024, "x" * 1025]),
    st.text(max_size=12),
)
json_data = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
)
field = st.one_of(
    st.sampled_from(["add", "remove", "Set", "FWW", "LWW", "LWWN", "ADD", "set", "color",
                     "a.b:c-d_1", "n" * 128, "n" * 129, "has space", "new\nline", ""]),
    json_data,
)
KEYS = ("operation", "type", "name", "value")


@st.composite
def hostile_changes(draw: st.DrawFn) -> Any:
    """A change that is mostly well formed, but any key may be missing or anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_data)
    change: dict[str, Any] = {}
    for key in KEYS:
        roll = draw(st.integers(0, 5))
        if roll == 0:
            continue  # missing
        change[key] = draw(field if roll == 1 else st.sampled_from(_USUAL[key]))
    if draw(st.booleans()):
        change["extra"] = draw(json_data)
    return change


_USUAL: dict[str, list[Any]] = {
    "operation": ["add", "remove"],
    "type": ["Set", "FWW", "LWW", "LWWN"],
    "name": ["color", "tags", "a.b:c-d_1"],
    "value": ["red", "1", 1, True, False, 0, None],
}


def same_changes(got: list[Change], want: list[Change]) -> None:
    """Equal field by field, kinds included (in Python 1 == True == 1.0)."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b) is Change
        assert [type(x) for x in a] == [type(x) for x in b]
        assert a == b
        assert a.raw is b.raw


@SETTINGS
@given(st.lists(hostile_changes(), min_size=1, max_size=6))
def test_the_inline_change_decoder_agrees_with_the_careful_one(changes: list[Any]) -> None:
    first = _decode_changes(changes)  # with names maybe unknown yet
    careful = [decode_change(raw) for raw in changes]
    again = _decode_changes(changes)  # with every valid name known by now
    same_changes(first, careful)
    same_changes(again, careful)


@st.composite
def hostile_records(draw: st.DrawFn) -> dict[str, Any]:
    record = draw(ws.records())
    for key in ("id", "message_id", "part_id", "identity_id", "changes", "status_text",
                "sent_at"):
        roll = draw(st.integers(0, 7))
        if roll == 0:
            record.pop(key, None)
        elif roll == 1:
            record[key] = draw(json_data)
    return record


@SETTINGS
@given(hostile_records())
def test_the_one_expression_record_check_agrees_with_the_careful_one(
    record: dict[str, Any],
) -> None:
    raw = json.dumps(record).encode()
    out = decode_response(raw)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:  # an integer beyond what orjson reads: malformed
        assert isinstance(out, dict) and out["reason"] == "malformed"
        return
    careful = _invalid_detail(parsed)
    if isinstance(out, Response):
        # The careful check finds nothing wrong with a record the fast check let through.
        assert careful == "the record breaks the Response Message rules"
        assert out.changes == _decode_changes(parsed["changes"])
    else:
        assert out["reason"] == "invalid"
        assert out["detail"] == careful != "the record breaks the Response Message rules"


@SETTINGS
@given(ws.workloads, ws.registries, st.integers(1, 12))
def test_the_engine_reads_a_part_state_view_as_it_reads_any_view(
    lines: list[bytes], registry: dict[str, str], batch: int
) -> None:
    engine = Engine(registry)
    direct, strict = MemoryStore(), MemoryStore()
    for start in range(0, len(lines), batch):
        items = [decode_response(raw) for raw in lines[start : start + batch]]
        fast = engine.apply_batch(items, direct)  # through MemoryStore.part_state
        slow = engine.apply_batch(items, StrictView(strict, engine.needs(items)))
        assert not hasattr(StrictView(strict, engine.needs(items)), "part_state")
        assert orjson.dumps(fast.events) == orjson.dumps(slow.events)
        assert orjson.dumps(fast.rejections) == orjson.dumps(slow.rejections)
        assert fast.delta == slow.delta
        direct.apply(fast.delta)
        strict.apply(slow.delta)
    assert orjson.dumps(direct.summaries()) == orjson.dumps(strict.summaries())
