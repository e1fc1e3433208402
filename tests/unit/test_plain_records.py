"""The compiled engine reads the common record straight from its bytes (the plain path) and
every other one through orjson. Both must read a record as the Python reference does: plain
records written every way JSON allows, and near misses that must take the long way."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from msgstate.streams import _native
from tests.unit.helpers import add, line, record, remove
from tests.unit.test_native_engine import SETTINGS, same

VALID_CHANGES = [
    add("Set", "tags", "blue"), add("Set", "tags", "é🙂"), remove("Set", "tags", "blue"),
    add("FWW", "poll", 3), add("FWW", "poll", -0), add("LWW", "color", True),
    add("LWW", "color", 9_223_372_036_854_775_807), add("LWWN", "pick", "x"),
    remove("LWWN", "pick"), remove("LWWN", "pick", None), remove("LWWN", "pick", "x"),
    remove("FWW", "poll", [1, {"a": None}]), remove("LWW", "color"),
]


class Members(list[tuple[str, Any]]):
    """An object's members in order, repeats allowed."""


space = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


def write(value: Any, draw: st.DrawFn) -> str:
    """`value` as JSON text, with whitespace drawn around every token."""
    def pad(text: str) -> str:
        return draw(space) + text + draw(space)
    if isinstance(value, dict | Members):
        items = value.items() if isinstance(value, dict) else value
        members = [pad(json.dumps(k, ensure_ascii=False)) + ":" + pad(write(v, draw)) for k, v in items]
        return "{" + ",".join(members) + draw(space) + "}"
    if isinstance(value, list):
        return "[" + ",".join(pad(write(v, draw)) for v in value) + draw(space) + "]"
    return json.dumps(value, ensure_ascii=False)


@st.composite
def plain_lines(draw: st.DrawFn) -> bytes:
    changes = draw(st.lists(st.sampled_from(VALID_CHANGES), min_size=1, max_size=4))
    fields: dict[str, Any] = draw(st.fixed_dictionaries({}, optional={
        "part_id": st.sampled_from([None, "root", "p2"]),
        "status_text": st.sampled_from([None, "", "Frodo 🐦 voted"]),
        "sent_at": st.sampled_from([None, 0, -1, 1_732_277_000_123]),
        "extra": st.sampled_from([{"deep": [[[1]], {}]}, [], "x", None, False]),
    }))
    rid = f"r{draw(st.integers(0, 30))}"
    body = record(rid, *changes, message=draw(st.sampled_from(["m1", "m2"])),
                  identity=draw(st.sampled_from(["alice", "bob"])), **fields)
    members = Members(body.items())
    if draw(st.booleans()):
        # Repeated keys: orjson keeps the last, and so must the plain path.
        members = Members([("id", "decoy"), ("changes", [add("LWW", "decoy", 1)]), *members])
    return (draw(space) + write(members, draw) + draw(space)).encode()


@SETTINGS
@given(st.lists(plain_lines(), min_size=1, max_size=30), st.integers(1, 7))
def test_plain_records_read_as_the_reference_reads_them(lines: list[bytes], size: int) -> None:
    assert all(_native.is_plain(raw) for raw in lines)
    same(lines, {}, [size])
    same(lines, {"color": "LWWN"}, [size])  # type clashes: refused changes echo the plain text


def text_of(base: bytes, old: bytes, new: bytes) -> bytes:
    assert old in base
    return base.replace(old, new, 1)


BASE = line("r1", add("LWW", "color", "red"), status_text="hi", sent_at=5)
NEAR_MISSES = [
    text_of(BASE, b'"red"', b'"r\\u0065d"'),  # an escape: read by orjson
    text_of(BASE, b'"red"', b'"re\\"d"'),
    text_of(BASE, b'"hi"', b'"h\\ni"'),
    text_of(BASE, b"5", b"5.0"), text_of(BASE, b"5", b"5e0"), text_of(BASE, b"5", b"05"),
    text_of(BASE, b"5", b"-"), text_of(BASE, b"5", b"99999999999999999999"),
    text_of(BASE, b"5", b"true"), text_of(BASE, b"5", b"tru"), text_of(BASE, b"5", b"nul"),
    text_of(BASE, b'"red"', b"1.5"), text_of(BASE, b'"red"', b"null"),
    text_of(BASE, b'"red"', b'"\x01"'), text_of(BASE, b'"red"', b'"\xed\xa0\x80"'),
    text_of(BASE, b'"red"', b"[\"red\"]"), text_of(BASE, b'"add"', b'"put"'),
    text_of(BASE, b'"LWW"', b'"lww"'), text_of(BASE, b'"color"', b'"col or"'),
    text_of(BASE, b'"r1"', b'""'), text_of(BASE, b'"hi"', b"7"),
    BASE + b"x", BASE + b"}", BASE[:-1], b"\xef\xbb\xbf" + BASE, BASE.replace(b", ", b",, ", 1),
    text_of(BASE, b"}]", b"},]"), text_of(BASE, b"}]", b"}, 3]"),
    line("r1", add("LWW", "color", "v" * 1025)), line("r1", add("LWW", "c", 2**63)),
    line("r1", add("LWW", "color", "red"), part_id=""), line("r1", add("LWW", "color", "red"), part_id=3),
    line("r1", add("LWW", "color", "red"), status_text="s" * 4097),
    line("r1", *[add("LWW", "color", i) for i in range(101)]),
    line("r1"), line("r1", add("LWW", "color", "red"), deep=[[[[[[[[[[1]]]]]]]]]]),
    line("r1", remove("Set", "tags")), line("r1", add("Set", "tags", None)),
    json.dumps({"id": "r1", "message_id": "m1", "changes": [add("LWW", "c", 1)]}).encode(),
    # Valid first, then overridden by an invalid repeat: orjson keeps the last.
    text_of(BASE, b'{"id": "r1"', b'{"id": "r1", "changes": [], "id": 5'),
    # Any "kind" (SPEC v1.1 section 3a), even "response", is read by orjson.
    text_of(BASE, b'{"id": "r1"', b'{"kind": "response", "id": "r1"'),
    text_of(BASE, b'{"id": "r1"', b'{"kind": "delete_message", "id": "r1"'),
    text_of(BASE, b'{"id": "r1"', b'{"kind": null, "id": "r1"'),
]


def test_near_misses_take_the_long_way_and_read_the_same() -> None:
    assert _native.is_plain(BASE)
    taken = [raw for raw in NEAR_MISSES if _native.is_plain(raw)]
    assert taken == []
    same([BASE, *NEAR_MISSES], {}, [1])
    same([BASE, *NEAR_MISSES], {}, [50])
