"""A registry's `max_values`: a cap on a state's distinct values in one part (SPEC section 3)."""

from __future__ import annotations

import re

import pytest

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.registry import check_registry, parse_registry, registry_caps
from tests.unit.helpers import add, line, remove, run

REACTIONS = {"reactions": {"type": "Set", "max_values": 2}, "pick": {"type": "LWW",
                                                                     "max_values": 1}}


def test_a_new_value_over_the_cap_is_refused_and_a_held_one_is_not() -> None:
    r = run(
        line("r1", add("Set", "reactions", "👍"), add("Set", "reactions", "🎉")),
        line("r2", add("Set", "reactions", "❤"), add("Set", "reactions", "👍"), identity="bob"),
        registry=REACTIONS,
    )
    assert r.reasons() == ["limit_exceeded"]
    assert r.rejections[0]["change_index"] == 0
    assert r.rejections[0]["detail"] == (
        "reactions already holds max_values=2 distinct values in this part"
    )
    assert r.values("reactions") == {"alice": ["👍", "🎉"], "bob": ["👍"]}


def test_a_value_nobody_holds_any_more_frees_its_place() -> None:
    r = run(
        line("r1", add("Set", "reactions", "a"), add("Set", "reactions", "b")),
        line("r2", remove("Set", "reactions", "a"), add("Set", "reactions", "c")),  # same batch
        line("r3", add("Set", "reactions", "d"), identity="bob"),
        registry=REACTIONS,
    )
    assert r.reasons() == ["limit_exceeded"]
    assert r.values("reactions") == {"alice": ["b", "c"]}


def test_the_cap_counts_across_identities_per_part_and_for_scalar_states() -> None:
    r = run(registry=REACTIONS)
    r.feed(
        line("r1", add("LWW", "pick", 1)),
        line("r2", add("LWW", "pick", 1.0), identity="bob"),  # another value: over the cap
        line("r3", add("LWW", "pick", 1), identity="bob"),
        line("r4", add("LWW", "pick", 2), part="p2"),  # another part, another tally
        line("r5", add("LWW", "pick", 3)),  # alice still holds 1 alone: refused all the same
    )
    assert r.reasons() == ["limit_exceeded", "limit_exceeded"]
    assert [x["response_id"] for x in r.rejections] == ["r2", "r5"]
    assert r.values("pick") == {"alice": 1, "bob": 1}
    assert r.values("pick", part="p2") == {"alice": 2}


def test_erasure_and_deletion_free_the_cap() -> None:
    r = run(line("r1", add("LWW", "pick", "x")), registry=REACTIONS)
    r.feed(
        b'{"kind": "erase_identity", "id": "e1", "identity_id": "alice"}',
        line("r2", add("LWW", "pick", "y"), identity="bob"),
    )
    assert r.rejections == []
    assert r.values("pick") == {"bob": "y"}


def test_registry_forms_and_errors() -> None:
    registry = parse_registry(b'{"poll": "FWW", "r": {"type": "Set", "max_values": 20},'
                              b' "t": {"type": "LWW"}}')
    assert registry == {"poll": "FWW", "r": {"type": "Set", "max_values": 20}, "t": "LWW"}
    assert check_registry(registry) == {"poll": "FWW", "r": "Set", "t": "LWW"}
    assert registry_caps(registry) == {"r": 20}
    for bad, words in [
        (b'{"r": {"type": "Set", "max_values": 0}}', "max_values 0"),
        (b'{"r": {"type": "Set", "max_values": 10001}}', "from 1 to 10000"),
        (b'{"r": {"type": "Set", "max_values": true}}', "max_values True"),
        (b'{"r": {"type": "Set", "max_values": 2.0}}', "max_values 2.0"),
        (b'{"r": {"max_values": 2}}', "type None"),
        (b'{"r": {"type": "Set", "cap": 2}}', "unknown key 'cap'"),
        (b'{"r": ["Set"]}', "type ['Set']"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse_registry(bad)
