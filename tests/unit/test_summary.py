"""The Response Summary (SPEC section 4): version, values, tally order, clipping."""

from __future__ import annotations

import pytest

from msgstate.schemas.exceptions import ValidationError
from msgstate.streams.engine.state import PartMeta
from msgstate.streams.engine.summary import render_summary, render_tally
from tests.unit.helpers import add, line, remove, run


def test_a_part_nobody_wrote() -> None:
    r = run()
    assert r.summary("m9", "p") == {"message_id": "m9", "part_id": "p", "version": 0, "states": {}}
    assert r.store.summaries() == []


def test_version_counts_responses_with_at_least_one_event() -> None:
    r = run(
        line("r1", add("LWW", "c", "red"), add("Set", "s", "x")),  # 1
        line("r2", add("LWW", "c", "red")),  # no change
        line("r3", add("FWW", "f", 1), add("FWW", "f", 2)),  # 2, despite a rejection
        line("r4", remove("Set", "s", "nope")),  # no change
        line("r5", {"bad": True}),  # all rejected
        line("r6", add("LWW", "c", "blue"), part="p2"),  # another part
        line("r7", add("Set", "s", "y"), identity="bob"),  # 3
    )
    assert r.summary()["version"] == 3
    assert r.summary(part="p2")["version"] == 1


def test_values_hold_each_identity_and_omit_those_without_a_value() -> None:
    r = run(
        line("r1", add("LWWN", "c", "red"), add("Set", "s", "a")),
        line("r2", add("LWWN", "c", "blue"), identity="bob"),
        line("r3", remove("LWWN", "c"), remove("Set", "s", "a")),
    )
    states = r.summary()["states"]
    assert states["c"] == {
        "type": "LWWN",
        "values": {"bob": "blue"},
        "tally": [{"value": "blue", "count": 1}],
    }
    assert states["s"] == {"type": "Set", "values": {}, "tally": []}


def test_tally_order_count_then_false_true_integers_strings_by_code_point() -> None:
    values: list[object] = [
        "b", "a", "B", "\uffff", "\U0001f600", "\u00e9", 10, -5, 3, True, False, "1", 1,
    ]
    lines = [line(f"r{n}", add("LWW", "c", v), identity=f"u{n}") for n, v in enumerate(values)]
    lines.append(line("rz", add("LWW", "c", "z"), identity="x1"))
    lines.append(line("ry", add("LWW", "c", "z"), identity="x2"))
    tally = run(*lines).summary()["states"]["c"]["tally"]
    assert tally == [
        {"value": "z", "count": 2},
        {"value": False, "count": 1},
        {"value": True, "count": 1},
        {"value": -5, "count": 1},
        {"value": 1, "count": 1},
        {"value": 3, "count": 1},
        {"value": 10, "count": 1},
        {"value": "1", "count": 1},
        {"value": "B", "count": 1},
        {"value": "a", "count": 1},
        {"value": "b", "count": 1},
        {"value": "\u00e9", "count": 1},
        {"value": "\uffff", "count": 1},  # code points, not UTF-16 units
        {"value": "\U0001f600", "count": 1},
    ]


def test_set_tally_counts_identities_per_member() -> None:
    r = run(
        line("r1", add("Set", "s", "red"), add("Set", "s", "green")),
        line("r2", add("Set", "s", "red"), identity="bob"),
        line("r3", add("Set", "s", 1), add("Set", "s", True), identity="carol"),
    )
    assert r.summary()["states"]["s"]["tally"] == [
        {"value": "red", "count": 2},
        {"value": True, "count": 1},
        {"value": 1, "count": 1},
        {"value": "green", "count": 1},
    ]


def test_clipping() -> None:
    r = run(
        *[line(f"r{i}", add("LWW", "c", i % 2), identity=f"u{i}") for i in (3, 1, 4, 0, 2)],
        line("rs", add("Set", "s", "x"), identity="solo"),
    )
    clipped = r.store.summary("m1", "root", clip=2)
    c = clipped["states"]["c"]
    assert c["values"] == {"u0": 0, "u1": 1}  # the first identities in code-point order
    assert c["clipped"] is True and c["identities"] == 5
    assert c["tally"] == [{"value": 0, "count": 3}, {"value": 1, "count": 2}]  # never clipped
    assert clipped["states"]["s"] == r.summary()["states"]["s"]  # not over: not marked
    assert "clipped" not in clipped["states"]["s"]
    zero = r.store.summary("m1", "root", clip=0)["states"]["s"]
    assert zero == {
        "type": "Set",
        "values": {},
        "tally": [{"value": "x", "count": 1}],
        "clipped": True,
        "identities": 1,
    }
    assert r.store.summary("m1", "root", clip=5)["states"]["c"] == r.summary()["states"]["c"]
    with pytest.raises(ValidationError):
        r.store.summary("m1", "root", clip=-1)


def test_render_summary_takes_plain_stored_state() -> None:
    meta = PartMeta(4, {"s": "Set", "c": "LWW", "empty": "FWW"})
    holdings = {"s": {"a": (b'"x"', b"1")}, "c": {"a": b"true", "b": b"true"}}
    tallies = {"s": {b'"x"': 1, b"1": 1, b'"gone"': 0}, "c": {b"true": 2}}
    summary = render_summary("m", "p", meta, holdings, tallies)
    assert summary == {
        "message_id": "m",
        "part_id": "p",
        "version": 4,
        "states": {
            "s": {
                "type": "Set",
                "values": {"a": ["x", 1]},
                "tally": [{"value": 1, "count": 1}, {"value": "x", "count": 1}],
            },
            "c": {"type": "LWW", "values": {"a": True, "b": True}, "tally": [
                {"value": True, "count": 2}]},
            "empty": {"type": "FWW", "values": {}, "tally": []},
        },
    }
    # Without tallies they are counted from the holdings.
    assert render_summary("m", "p", meta, holdings) == summary


def test_render_tally_ignores_non_positive_counts() -> None:
    assert render_tally({b'"a"': 0, b'"b"': -1, b"false": 2}) == [{"value": False, "count": 2}]
