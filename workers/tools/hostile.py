"""Hostile records for fuzz runs: every way a Response Message can be broken, and random bytes.

Each one must end as a rejection with a reason (SPEC sections 3 and 6) and leave the state of
the valid records around it alone; none may crash or stall a worker.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson

_Maker = Callable[[random.Random], bytes]


def _good(rng: random.Random) -> dict[str, object]:
    return {"id": f"h-{rng.getrandbits(48):012x}", "message_id": f"hostile-{rng.randrange(5)}",
            "identity_id": f"u{rng.randrange(9)}",
            "changes": [{"operation": "add", "type": "Set", "name": "tags", "value": "x"}]}


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randrange(1, 400)) or b"\xff"


def _invalid_utf8(rng: random.Random) -> bytes:
    return orjson.dumps(_good(rng)).replace(b'"x"', b'"\xc3\x28"')


def _lone_surrogate(rng: random.Random) -> bytes:
    return orjson.dumps(_good(rng)).replace(b'"x"', b'"\\ud800"')


def _deep_nesting(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 1 / 3:  # a change's value nested a little: invalid_change, the change echoed
        return orjson.dumps(_good(rng)).replace(b'"x"', b"[" * 40 + b"]" * 40)
    if roll < 2 / 3:  # deeper than a rejection can echo (64 levels), within the parser's: invalid
        depth = rng.choice([200, 600])
        return orjson.dumps(_good(rng)).replace(b'"x"', b"[" * depth + b"]" * depth)
    depth = rng.choice([2000, 20000])  # beyond the parser's limit, anywhere in the record: malformed
    return orjson.dumps(_good(rng))[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"


def _huge_string(rng: random.Random) -> bytes:
    record = _good(rng)
    record["status_text"] = "é" * rng.choice([5000, 40_000])  # over 4096 code points, or 64 KiB
    return orjson.dumps(record)


def _huge_value(rng: random.Random) -> bytes:
    record = _good(rng)
    record["changes"] = [{"operation": "add", "type": "LWW", "name": "big", "value": "v" * 2000}]
    return orjson.dumps(record)


def _wrong_types(rng: random.Random) -> bytes:
    record = _good(rng)
    field = rng.choice(["id", "message_id", "identity_id", "changes", "part_id", "sent_at"])
    # Wrong for every one of those fields (None would be fine for part_id and sent_at).
    record[field] = rng.choice([1.5, True, [], {}, "", ["a"]])
    return orjson.dumps(record)


def _unknown_type(rng: random.Random) -> bytes:
    record = _good(rng)
    record["changes"] = [{"operation": rng.choice(["add", "merge"]),
                          "type": rng.choice(["Counter", "set", "MV", ""]), "name": "tags",
                          "value": 1}]
    return orjson.dumps(record)


def _not_an_object(rng: random.Random) -> bytes:
    return rng.choice([b"[]", b"null", b"42", b'"text"', b"{", b"{}}", b"", b"NaN", b"1e999"])


def _too_many_changes(rng: random.Random) -> bytes:
    record = _good(rng)
    record["changes"] = [{"operation": "add", "type": "Set", "name": "t", "value": i}
                         for i in range(rng.choice([0, 101, 500]))]
    return orjson.dumps(record)


MAKERS: tuple[_Maker, ...] = (_random_bytes, _invalid_utf8, _lone_surrogate, _deep_nesting,
                              _huge_string, _huge_value, _wrong_types, _unknown_type,
                              _not_an_object, _too_many_changes)


def hostile_records(count: int, seed: int = 1) -> list[bytes]:
    """`count` hostile records, cycling through every kind so each appears."""
    rng = random.Random(seed)
    return [MAKERS[i % len(MAKERS)](rng) for i in range(count)]


def blend(valid: list[bytes], hostile: list[bytes], seed: int = 1) -> list[bytes]:
    """The valid records in their order, with the hostile ones at random places between them."""
    rng = random.Random(seed)
    out = list(valid)
    for record in hostile:
        out.insert(rng.randrange(len(out) + 1), record)
    return out
