"""Counts and articles in the sentences msgstate prints: "1 record", "2 records", "an LWW"."""

from __future__ import annotations

# Letters whose names start with a vowel sound: "an FWW", "an LWW", "an SSL", but "a CRDT".
_VOWEL_SOUND_LETTERS = frozenset("AEFHILMNORSX")


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it takes: "1 record", "0 records", "4,000 identities"."""
    noun = singular if n == 1 else (plural or singular + "s")
    return f"{n:,} {noun}"


def article(word: str) -> str:
    """"a" or "an" before `word`; an abbreviation read letter by letter ("LWW", "FWW") takes
    the article of its first letter's name."""
    if not word:
        return "a"
    if len(word) > 1 and word.isupper():
        return "an" if word[0] in _VOWEL_SOUND_LETTERS else "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def with_article(word: str) -> str:
    """`word` after its article: "an LWW", "a Set"."""
    return f"{article(word)} {word}"
