"""Hypothesis strategies: random workloads of record lines, good and bad.

Small pools of messages, parts, identities, names and ids make collisions
(duplicates, type clashes, shared tallies) frequent; every kind of bad input
of SPEC section 3 shows up now and then.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import strategies as st

MESSAGES = ["m1", "m2", "layer:///messages/940de862"]
PARTS = ["root", "p2"]
IDENTITIES = ["alice", "bob", "layer:///identities/FrodoTheDodo", 'q"\\\t\u0001\u00e9\U0001f600']
NAMES = ["color", "poll", "tags", "rsvp", "a.b:c-d_1"]
TYPES = ["Set", "FWW", "LWW", "LWWN"]
GOOD_VALUES: list[Any] = ["red", "blue", "1", "", "é" * 512, 1, 0, -1, True, False,
                          2**63 - 1, -(2**63), 'q"\\/\b\f\n\r\u001f\u007f\u2028\U0001f600',
                          # v1.1: floats, arrays and objects (equal ones written apart)
                          1.0, 100.0, -0.5, -0.0, 0.0, 1e-7, 1e16, [], {}, ["red"], [1, 1.0],
                          {"v": 1}, {"a": 1, "b": [None, 2.5]}, {"b": [None, 2.5], "a": 1},
                          {"type": "choice", "choices": ["x"], "selected": "x"}, [[[True]]]]
# Not valid values, but all of them survive a JSON round trip unchanged.
BAD_VALUES: list[Any] = [2**63, 2**64 - 1, None, "x" * 1025, "é" * 513, 1e300, -1e19,
                         {"b": {"a": [1.5, None, 2**64 - 1]}}, ["x" * 1100],
                         [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]

_absent = object()

good_values = st.sampled_from(GOOD_VALUES)
bad_values = st.sampled_from(BAD_VALUES)


@st.composite
def changes(draw: st.DrawFn, valid_share: float = 0.85) -> Any:
    """One change: mostly well formed, sometimes broken in one way."""
    op = draw(st.sampled_from(["add", "add", "remove"]))
    kind = draw(st.sampled_from(TYPES))
    name = draw(st.sampled_from(NAMES))
    change: dict[str, Any] = {"operation": op, "type": kind, "name": name}
    value = draw(st.one_of(good_values, st.just(_absent)) if op == "remove" else good_values)
    if value is not _absent:
        change["value"] = value
    if draw(st.floats(0, 1)) < valid_share:
        return change
    flaw = draw(st.integers(0, 8))
    if flaw == 0:
        return draw(st.sampled_from([None, "add", 7, ["add"], []]))  # not an object
    if flaw == 1:
        change["operation"] = draw(st.sampled_from(["ADD", "put", None, 1, ["add"]]))
    elif flaw == 2:
        change["type"] = draw(st.sampled_from(["set", "Counter", None, 1, {"t": "Set"}]))
    elif flaw == 3:
        change["name"] = draw(st.sampled_from(["", "has space", "new\nline", "x" * 129,
                                               "é", 5, None, "ok\n"]))
    elif flaw == 4:
        change.pop("value", None)
    elif flaw == 5:
        change["value"] = draw(bad_values)
    elif flaw == 6:
        change["value"] = None
    elif flaw == 7:
        change["extra"] = "ignored"
        change.pop("operation")
    else:
        change["name"] = "n" * 128  # the longest valid name
    return change


@st.composite
def records(draw: st.DrawFn, ids: list[str] | None = None) -> dict[str, Any]:
    """A Response Message as JSON data; sometimes with one bad field."""
    record: dict[str, Any] = {
        "id": draw(st.sampled_from(ids or [f"r{n}" for n in range(12)])),
        "message_id": draw(st.sampled_from(MESSAGES)),
        "identity_id": draw(st.sampled_from(IDENTITIES)),
        "changes": draw(st.lists(changes(), min_size=1, max_size=4)),
    }
    part = draw(st.sampled_from([_absent, None, *PARTS]))
    if part is not _absent:
        record["part_id"] = part
    if draw(st.booleans()):
        record["status_text"] = draw(st.sampled_from([None, "", "voted", "ü" * 4096]))
    if draw(st.booleans()):
        record["sent_at"] = draw(st.sampled_from([None, 0, 1732277000123, -(2**63)]))
    if draw(st.integers(0, 9)) == 0:
        flaw = draw(st.integers(0, 9))
        key = draw(st.sampled_from(["id", "message_id", "identity_id", "changes"]))
        if flaw == 0:
            record.pop(key)
        elif flaw == 1:
            record[key] = draw(st.sampled_from([None, 1, True, ["x"], {"x": 1}]))
        elif flaw == 2:
            record[key] = ""
        elif flaw == 3:
            record["id"] = "i" * 129
        elif flaw == 4:
            record["message_id"] = "m" * 257
        elif flaw == 5:
            record["part_id"] = draw(st.sampled_from(["", "p" * 129, 3, False]))
        elif flaw == 6:
            record["changes"] = draw(st.sampled_from([[], {"operation": "add"}, "x"]))
        elif flaw == 7:
            record["status_text"] = draw(st.sampled_from(["s" * 4097, 5, ["s"]]))
        elif flaw == 8:
            record["sent_at"] = draw(st.sampled_from([True, 1.5, 1e3, "1", 2**63, -(2**63) - 1]))
        else:
            record["changes"] = [{"operation": "add", "type": "LWW", "name": "x", "value": 1}] * 101
    return record


MALFORMED_LINES = [
    b"{", b"[]", b"[1, 2]", b"null", b'"text"', b"7", b"NaN", b"{'id': 1}",
    b'{"id": "\\ud800"}', b'"\\udc00"', b"\xff\xfe{}", b'{"id": "\xed\xa0\x80"}',
    b"\xef\xbb\xbf{}", b'{"a": 1,}', b'{"id": "r1", "x": "\x01"}',
]


def encode(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()


@st.composite
def removals(draw: st.DrawFn, ids: list[str] | None = None) -> dict[str, Any]:
    """A deletion or an erasure (SPEC section 3a); sometimes with one bad field."""
    record: dict[str, Any] = {"id": draw(st.sampled_from(ids or ["d1", "d2", "e1", "e2", "r1"]))}
    if draw(st.booleans()):
        record.update(kind="delete_message", message_id=draw(st.sampled_from(MESSAGES)),
                      identity_id="mod")
    else:
        record.update(kind="erase_identity", identity_id=draw(st.sampled_from(IDENTITIES)))
    if draw(st.booleans()):
        record["status_text"] = draw(st.sampled_from([None, "gone"]))
    if draw(st.integers(0, 9)) == 0:
        record[draw(st.sampled_from(["kind", "id", "identity_id", "message_id", "sent_at"]))] = (
            draw(st.sampled_from([None, "", 1.5, "other"]))
        )
    return record


@st.composite
def lines(draw: st.DrawFn, ids: list[str] | None = None, with_removals: bool = True) -> bytes:
    """One record value, as it would be a line of a replay file."""
    roll = draw(st.integers(0, 29))
    if roll == 0:
        return draw(st.sampled_from(MALFORMED_LINES))
    if roll in (2, 3) and with_removals:
        return encode(draw(removals(ids)))
    if roll == 1:
        # Over the size limit, yet otherwise a valid record.
        record = draw(records(ids))
        record["padding"] = "p" * 65536
        return encode(record)
    return encode(draw(records(ids)))


workloads = st.lists(lines(), min_size=1, max_size=40)
registries = st.one_of(
    st.just({}),
    st.dictionaries(
        st.sampled_from(NAMES),
        st.sampled_from(TYPES)
        | st.builds(lambda kind, cap: {"type": kind, "max_values": cap},
                    st.sampled_from(TYPES), st.integers(1, 3)),
        max_size=3,
    ),
)


# Capped states s and t (SPEC v1.1 `max_values`), for `capped_workloads`.
capped_registries = st.fixed_dictionaries({
    "s": st.one_of(st.just("Set"), st.builds(lambda cap: {"type": "Set", "max_values": cap},
                                             st.integers(1, 3))),
    "t": st.builds(lambda kind, cap: {"type": kind, "max_values": cap},
                   st.sampled_from(TYPES), st.integers(1, 3)),
})
# One message, two parts, five identities and few values: caps fill, and identities race for
# the last distinct value within a round and across rounds.
capped_workloads = st.lists(
    st.builds(
        lambda rid, ident, part, changes: orjson.dumps({
            "id": rid, "message_id": "m", "part_id": part, "identity_id": ident,
            "changes": changes}),
        st.sampled_from([f"r{n}" for n in range(40)]),
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.sampled_from(["root", "p2"]),
        st.lists(
            st.fixed_dictionaries({
                "operation": st.sampled_from(["add", "add", "remove"]),
                "type": st.sampled_from(TYPES),
                "name": st.sampled_from(["s", "t"]),
                "value": st.sampled_from(["x", "y", "z", 1, True]),
            }),
            min_size=1, max_size=4,
        ),
    ),
    min_size=10, max_size=40,
)


def dense_lines(
    ids: int, kinds: list[str], values: list[Any], max_size: int
) -> st.SearchStrategy[list[bytes]]:
    """Dense workloads: one message, few names and identities, so limits, conflicts and Set
    orders collide."""
    return st.lists(
        st.builds(
            lambda rid, ident, changes: orjson.dumps({
                "id": rid, "message_id": "m", "identity_id": ident, "changes": changes}),
            st.sampled_from([f"r{n}" for n in range(ids)]),
            st.sampled_from(["a", "b"]),
            st.lists(
                st.fixed_dictionaries({
                    "operation": st.sampled_from(["add", "remove"]),
                    "type": st.sampled_from(kinds),
                    "name": st.sampled_from(["s", "t"]),
                    "value": st.sampled_from(values),
                }),
                min_size=1, max_size=6,
            ),
        ),
        min_size=1, max_size=max_size,
    )
