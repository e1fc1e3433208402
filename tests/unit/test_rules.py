"""The change rules (SPEC section 3): each type's add and remove, each reason, their order."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.helpers import ABSENT, add, change, line, remove, run

# -- invalid_change -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "add",
        7,
        ["add"],
        {"type": "LWW", "name": "c", "value": 1},  # no operation
        change("ADD", "LWW", "c", 1),
        change("put", "LWW", "c", 1),
        {"operation": ["add"], "type": "LWW", "name": "c", "value": 1},
        change("add", "lww", "c", 1),
        change("add", "Counter", "c", 1),
        {"operation": "add", "type": {"t": 1}, "name": "c", "value": 1},
        {"operation": "add", "type": "LWW", "value": 1},  # no name
        change("add", "LWW", "", 1),
        change("add", "LWW", "n" * 129, 1),
        change("add", "LWW", "has space", 1),
        change("add", "LWW", "new\nline", 1),
        change("add", "LWW", "trailing\n", 1),
        change("add", "LWW", "caf\u00e9", 1),
        change("add", "LWW", "slash/", 1),
        change("add", "LWW", 5, 1),
        change("add", "LWW", "c"),  # an add needs a value
        change("add", "Set", "c"),
        change("add", "FWW", "c", None),
        change("add", "LWWN", "c", None),
        change("remove", "Set", "c"),  # a Set remove needs a value
        change("remove", "Set", "c", None),
        change("add", "LWW", "c", 2.0**63),  # a float's magnitude is below 2^63
        change("add", "LWW", "c", -1e19),
        change("add", "LWW", "c", 2**63),
        change("add", "LWW", "c", 2**64 - 1),
        change("add", "LWW", "c", "x" * 1025),
        change("add", "LWW", "c", "\u00e9" * 513),  # 1026 UTF-8 bytes
        change("add", "LWW", "c", [2**63]),  # numbers inside follow the same ranges
        change("add", "LWW", "c", {"v": [1e19]}),
        change("add", "LWW", "c", ["x" * 1100]),  # over 1024 bytes encoded
        change("add", "LWW", "c", [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]),  # 17 levels
        change("remove", "LWWN", "c", 2.0**64),  # present and not null: must be valid
        change("remove", "LWWN", "c", [2**64 - 1]),
    ],
)
def test_invalid_change(bad: Any) -> None:
    r = run(line("r1", bad, add("LWW", "ok", 1)))
    assert r.reasons() == ["invalid_change"]
    rejection = r.rejections[0]
    assert rejection["change_index"] == 0
    assert rejection["change"] == bad  # exactly as received
    assert (rejection["response_id"], rejection["message_id"], rejection["identity_id"]) == (
        "r1",
        "m1",
        "alice",
    )
    assert rejection["raw"] is None
    assert r.values("ok") == {"alice": 1}  # the other changes still apply
    assert "c" not in r.summary()["states"]


def test_numbers_beyond_64_bits_are_read_as_floats() -> None:
    # orjson reads integers beyond the unsigned 64-bit range as floats: still not valid.
    r = run(line("r1", add("LWW", "c", -(2**63) - 1), add("LWW", "d", 2**64)))
    assert r.reasons() == ["invalid_change", "invalid_change"]
    assert r.rejections[0]["change"]["value"] == float(-(2**63) - 1)


@pytest.mark.parametrize(
    "good",
    [
        change("add", "LWW", "n" * 128, 1),
        change("add", "LWW", "A-Z_a.z:0-9", 1),
        change("add", "LWW", "c", "\u00e9" * 512),  # 1024 UTF-8 bytes
        change("add", "LWW", "c", ""),
        change("add", "LWW", "c", 2**63 - 1),
        change("add", "LWW", "c", -(2**63)),
        change("add", "LWW", "c", False),
        change("add", "LWW", "c", 1.0),  # v1.1: floats, arrays and objects
        change("add", "LWW", "c", -1.5e18),
        change("add", "LWW", "c", ["red", None, {"a": [1.5]}]),
        change("add", "LWW", "c", {"v": 1, "w": None}),
        change("add", "LWW", "c", [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]),  # 16 levels
        change("add", "LWW", "c", []),
        change("remove", "LWWN", "c", 1.5),
        change("remove", "LWWN", "c", {}),
        change("remove", "LWWN", "c"),  # no value: fine for an LWWN remove
        change("remove", "LWWN", "c", None),
        {**change("add", "LWW", "c", 1), "extra": "ignored"},
    ],
)
def test_valid_change_edges(good: dict[str, Any]) -> None:
    assert run(line("r1", good)).rejections == []


def test_an_exponent_value_is_a_float_apart_from_the_integer() -> None:
    raw = line("r1", add("LWW", "c", 1)).replace(b'"value": 1', b'"value": 1e2')
    assert b"1e2" in raw
    r = run(raw, line("r2", add("LWW", "d", 100), identity="bob"))
    assert r.rejections == []
    assert r.values("c") == {"alice": 100.0}
    assert r.summary()["states"]["c"]["tally"] == [{"value": 100.0, "count": 1}]
    assert orjson.dumps(r.events[0]["new"]) == b"100.0"


def test_a_number_too_large_for_a_double_is_malformed() -> None:
    raw = line("r1", add("LWW", "c", [1])).replace(b"[1]", b"[1e400]")
    assert run(raw).reasons() == ["malformed"]


def test_values_equal_by_canonical_encoding() -> None:
    r = run(
        line("r1", add("Set", "s", {"a": 1, "b": 2})),
        line("r2", add("Set", "s", {"b": 2, "a": 1}), identity="bob"),
        line("r3", add("Set", "s", 1), add("Set", "s", 1.0), add("Set", "s", "1"),
             add("Set", "s", True), identity="carol"),
        line("r4", remove("Set", "s", {"b": 2, "a": 1})),
    )
    assert r.values("s") == {"bob": [{"a": 1, "b": 2}], "carol": [1, 1.0, "1", True]}
    tally = r.summary()["states"]["s"]["tally"]
    assert [orjson.dumps(entry["value"]) for entry in tally] == [
        b"true", b"1", b"1.0", b'"1"', b'{"a":1,"b":2}'
    ]


@pytest.mark.parametrize("kind", ["FWW", "LWW"])
@pytest.mark.parametrize("value", [ABSENT, None, 1.5, ["x"], "red"])
def test_fww_and_lww_removes_are_not_allowed_whatever_their_value(kind: str, value: Any) -> None:
    r = run(line("r1", add(kind, "c", "red")), line("r2", change("remove", kind, "c", value)))
    assert r.reasons() == ["remove_not_allowed"]
    assert r.values("c") == {"alice": "red"}


# -- each type ----------------------------------------------------------------------------


def test_set_add_appends_in_order_and_ignores_members_already_there() -> None:
    r = run(
        line("r1", add("Set", "s", "b"), add("Set", "s", "a")),
        line("r2", add("Set", "s", "b"), add("Set", "s", 1), add("Set", "s", True)),
    )
    assert r.values("s") == {"alice": ["b", "a", 1, True]}
    assert r.rejections == []


def test_set_remove_deletes_and_ignores_absent_members() -> None:
    r = run(
        line("r1", add("Set", "s", "a"), add("Set", "s", "b"), add("Set", "s", "c")),
        line("r2", remove("Set", "s", "b"), remove("Set", "s", "zzz"), remove("Set", "s", 1)),
    )
    assert r.values("s") == {"alice": ["a", "c"]}
    r.each(line("r3", remove("Set", "s", "a"), remove("Set", "s", "c")))
    assert r.values("s") == {}
    assert r.summary()["states"]["s"] == {"type": "Set", "values": {}, "tally": []}


def test_set_members_of_three_kinds_stay_distinct() -> None:
    r = run(line("r1", add("Set", "s", 1), add("Set", "s", "1"), add("Set", "s", True)))
    r.each(line("r2", remove("Set", "s", True)))
    assert r.values("s") == {"alice": [1, "1"]}


def test_fww_sets_once_and_conflicts_even_for_the_same_value() -> None:
    r = run(
        line("r1", add("FWW", "poll", "b")),
        line("r2", add("FWW", "poll", "b")),
        line("r3", add("FWW", "poll", "c")),
    )
    assert r.reasons() == ["fww_conflict", "fww_conflict"]
    assert r.rejections[1]["detail"] == 'poll already holds "b" for this identity'
    assert r.values("poll") == {"alice": "b"}


def test_fww_is_per_identity() -> None:
    r = run(line("r1", add("FWW", "poll", "a")), line("r2", add("FWW", "poll", "b"), identity="bob"))
    assert r.values("poll") == {"alice": "a", "bob": "b"}


def test_fww_conflict_within_one_response() -> None:
    r = run(line("r1", add("FWW", "poll", "a"), add("FWW", "poll", "b")))
    assert r.reasons() == ["fww_conflict"]
    assert r.rejections[0]["change_index"] == 1
    assert r.values("poll") == {"alice": "a"}


def test_lww_replaces() -> None:
    r = run(line("r1", add("LWW", "c", "red")), line("r2", add("LWW", "c", 7)))
    assert r.values("c") == {"alice": 7}


def test_lwwn_add_replaces_and_remove_unsets() -> None:
    r = run(line("r1", add("LWWN", "c", "red")), line("r2", add("LWWN", "c", "blue")))
    assert r.values("c") == {"alice": "blue"}
    r.each(line("r3", remove("LWWN", "c", "red")))  # not the value held: no effect
    assert r.values("c") == {"alice": "blue"}
    r.each(line("r4", remove("LWWN", "c", "blue")))
    assert r.values("c") == {}
    r.each(line("r5", add("LWWN", "c", 1)), line("r6", remove("LWWN", "c", True)))
    assert r.values("c") == {"alice": 1}  # 1 and true are different values
    r.each(line("r7", remove("LWWN", "c")))  # no value: always unsets
    assert r.values("c") == {}
    r.each(line("r8", remove("LWWN", "c", None)))  # nothing held: no effect, accepted
    assert r.rejections == []


# -- type_mismatch and the registry ---------------------------------------------------------


def test_the_first_accepted_change_fixes_the_type_per_part() -> None:
    r = run(
        line("r1", add("LWW", "c", "red")),
        line("r2", add("Set", "c", "red"), identity="bob"),
        line("r3", add("Set", "c", "red"), part="p2"),
    )
    assert r.reasons() == ["type_mismatch"]
    assert r.summary()["states"]["c"]["type"] == "LWW"
    assert r.summary(part="p2")["states"]["c"]["type"] == "Set"


def test_a_rejected_change_does_not_fix_the_type() -> None:
    r = run(line("r1", remove("FWW", "c")), line("r2", add("Set", "c", "x")))
    assert r.reasons() == ["remove_not_allowed"]
    assert r.summary()["states"]["c"]["type"] == "Set"


def test_a_change_with_no_effect_still_fixes_the_name() -> None:
    r = run(line("r1", remove("Set", "s", "x")))
    assert r.summary()["states"] == {"s": {"type": "Set", "values": {}, "tally": []}}
    assert r.summary()["version"] == 0
    assert r.events == []
    r.each(line("r2", add("LWW", "s", 1)))
    assert r.reasons() == ["type_mismatch"]


def test_type_mismatch_comes_before_remove_not_allowed() -> None:
    r = run(line("r1", add("Set", "c", "x")), line("r2", remove("LWW", "c")))
    assert r.reasons() == ["type_mismatch"]


def test_the_registry_types_a_name_from_the_first_change() -> None:
    registry = {"poll": "FWW"}
    r = run(
        line("r1", add("LWW", "poll", "a")),
        line("r2", add("FWW", "poll", "b")),
        line("r3", add("LWW", "free", 1)),
        registry=registry,
    )
    assert r.reasons() == ["type_mismatch"]
    assert "registered" in r.rejections[0]["detail"]
    assert r.summary()["states"]["poll"]["type"] == "FWW"
    assert r.values("free") == {"alice": 1}


def test_the_registry_is_checked() -> None:
    from msgstate.schemas.exceptions import ConfigError
    from msgstate.streams.engine.engine import Engine

    with pytest.raises(ConfigError):
        Engine({"poll": "Counter"})
    with pytest.raises(ConfigError):
        Engine({"bad name": "Set"})


# -- limit_exceeded -----------------------------------------------------------------------


def _names(first: int, count: int) -> list[dict[str, Any]]:
    return [add("LWW", f"n{i}", i) for i in range(first, first + count)]


def test_a_part_holds_64_names() -> None:
    r = run(line("r1", *_names(0, 64)))
    assert r.rejections == []
    r.each(line("r2", add("LWW", "n0", "again"), *_names(64, 1), remove("Set", "n99", "x")))
    assert r.reasons() == ["limit_exceeded", "limit_exceeded"]
    assert [x["change_index"] for x in r.rejections] == [1, 2]
    assert len(r.summary()["states"]) == 64
    assert r.values("n0") == {"alice": "again"}
    # Another part has its own 64.
    assert run(line("r1", *_names(0, 64)), line("r2", *_names(64, 1), part="p2")).rejections == []


def test_the_name_limit_comes_after_remove_not_allowed() -> None:
    r = run(line("r1", *_names(0, 64)), line("r2", remove("FWW", "n99")))
    assert r.reasons() == ["remove_not_allowed"]


def test_an_identity_holds_256_members_per_set() -> None:
    members = [add("Set", "s", i) for i in range(256)]
    r = run(line("r1", *members[:100]), line("r2", *members[100:200]), line("r3", *members[200:]))
    assert r.rejections == []
    r.each(
        line("r4", add("Set", "s", 0), add("Set", "s", "new"), add("Set", "s", 255)),
        line("r5", add("Set", "s", "other"), identity="bob"),
    )
    assert r.reasons() == ["limit_exceeded"]  # re-adding a member is a no-op, never over
    assert r.rejections[0]["change_index"] == 1
    assert len(r.values("s")["alice"]) == 256
    r.each(line("r6", remove("Set", "s", 0), add("Set", "s", "new")))
    assert r.values("s")["alice"][-1] == "new"
    assert len(r.values("s")["alice"]) == 256


def test_fww_conflict_comes_before_limit_exceeded() -> None:
    r = run(line("r1", add("FWW", "p", 1), *_names(0, 63)), line("r2", add("FWW", "p", 2)))
    assert r.reasons() == ["fww_conflict"]


def test_rejections_of_one_response_come_in_change_order() -> None:
    r = run(
        line("r0", add("FWW", "f", 1), add("LWW", "l", 1)),
        line(
            "r1",
            add("FWW", "f", 2),
            None,
            remove("LWW", "l"),
            add("Set", "l", 1),
            add("LWW", "ok", 1),
        ),
    )
    assert r.reasons() == ["fww_conflict", "invalid_change", "remove_not_allowed", "type_mismatch"]
    assert [x["change_index"] for x in r.rejections] == [0, 1, 2, 3]
