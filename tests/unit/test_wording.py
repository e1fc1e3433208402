"""Counts take the noun's number; state types take the article of how they are read."""

from __future__ import annotations

import pytest

from msgstate.schemas.wording import article, count, with_article


def test_a_count_of_one_takes_the_singular() -> None:
    assert count(1, "record") == "1 record"
    assert count(0, "record") == "0 records"
    assert count(4000, "record") == "4,000 records"
    assert count(1, "identity", "identities") == "1 identity"
    assert count(2, "identity", "identities") == "2 identities"


@pytest.mark.parametrize(("word", "expected"), [
    ("LWW", "an"), ("LWWN", "an"), ("FWW", "an"), ("Set", "a"), ("SSL", "an"), ("CRDT", "a"),
    ("invalid", "an"), ("record", "a"), ("", "a"),
])
def test_the_article_follows_the_sound(word: str, expected: str) -> None:
    assert article(word) == expected


def test_with_article() -> None:
    assert with_article("LWW") == "an LWW"
    assert with_article("Set") == "a Set"
