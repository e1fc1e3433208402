"""A deterministic, chat-like workload of Response Messages, for the benchmarks.

Messages are Zipf-popular (a few hot messages take most responses), authors
come from a large pool, and each response carries 1-3 changes over a mix of
Set, FWW, LWW and LWWN states. A small share of records is bad on purpose
(retries that are duplicates, invalid changes, type clashes, broken JSON), so
the benchmark exercises the rejection paths too.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

# name -> (type, the values it draws from)
STATES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "reactions": ("Set", ("👍", "❤️", "😂", "🎉", "👀", "🚀", "🙏", "🔥", "✅", "💯", "😮", "😢")),
    "favorite_colors": ("Set", ("red", "green", "blue", "yellow", "purple", "orange")),
    "poll_choice": ("FWW", ("a", "b", "c", "d")),
    "accepted_answer": ("FWW", (True,)),
    "latest_color": ("LWW", ("red", "green", "blue", "yellow", "purple", "orange")),
    "rating": ("LWW", (1, 2, 3, 4, 5)),
    "rsvp": ("LWWN", ("yes", "no", "maybe")),
    "starred": ("LWWN", (True, False)),
}
_NAMES = tuple(STATES)
_REMOVABLE = tuple(name for name, (kind, _) in STATES.items() if kind in ("Set", "LWWN"))


def zipf_weights(count: int, exponent: float = 1.1) -> list[float]:
    """Cumulative Zipf weights for ranks 1..count."""
    return list(itertools.accumulate(1.0 / rank**exponent for rank in range(1, count + 1)))


def responses(
    count: int,
    *,
    messages: int | None = None,
    identities: int = 50_000,
    bad_share: float = 0.01,
    seed: int = 7,
    exponent: float = 1.1,
    hot_share: float = 0.0,
    object_share: float = 0.0,
) -> Iterator[bytes]:
    """`count` record values (JSON bytes), in publishing order.

    Messages are drawn with Zipf weights of `exponent`; with `hot_share`, that share of all
    records goes to one more message id, the hot one, on top of the Zipf-popular ones. With
    `object_share`, that share of the changes carries an object value instead, like a Layer
    Choice's `custom_response_data` (SPEC v1.1).
    """
    rng = random.Random(seed)
    messages = messages or max(1, count // 20)
    message_ids = [f"layer:///messages/{rng.getrandbits(64):016x}" for _ in range(messages)]
    hot_id = f"layer:///messages/hot-{seed}"
    previous: bytes | None = None
    for n, pick in enumerate(_zipf_picks(rng, messages, count, exponent)):
        roll = rng.random()
        if roll < bad_share and previous is not None:
            yield _bad(rng, previous)
            continue
        author = rng.randrange(identities)
        record: dict[str, Any] = {
            "id": f"r-{n:012d}",
            "message_id": hot_id if hot_share and rng.random() < hot_share else message_ids[pick],
            "identity_id": f"layer:///identities/user{author}",
            "changes": [_change(rng, object_share) for _ in range(rng.choice((1, 1, 2, 3)))],
            "sent_at": 1_732_277_000_000 + n,
        }
        if rng.random() < 0.1:
            record["part_id"] = "thread"
        if rng.random() < 0.3:
            record["status_text"] = f"user{author} responded"
        previous = orjson.dumps(record)
        yield previous


def _zipf_picks(rng: random.Random, count: int, picks: int, exponent: float = 1.1) -> Iterator[int]:
    """`picks` Zipf-distributed ranks in [0, count), drawn a block at a time."""
    weights = zipf_weights(count, exponent)
    population = range(count)
    while picks > 0:
        block = min(picks, 65_536)
        yield from rng.choices(population, cum_weights=weights, k=block)
        picks -= block


def _change(rng: random.Random, object_share: float = 0.0) -> dict[str, Any]:
    if rng.random() < 0.25:
        name = rng.choice(_REMOVABLE)
        kind, values = STATES[name]
        return {"operation": "remove", "type": kind, "name": name, "value": _value(rng, values, object_share)}
    name = rng.choice(_NAMES)
    kind, values = STATES[name]
    return {"operation": "add", "type": kind, "name": name, "value": _value(rng, values, object_share)}


def _value(rng: random.Random, values: tuple[Any, ...], object_share: float) -> Any:
    choice = rng.choice(values)
    if object_share and rng.random() < object_share:
        return {"selection": choice, "label": f"Choice {choice}", "score": rng.choice((0.5, 1.0, 2))}
    return choice


def _bad(rng: random.Random, previous: bytes) -> bytes:
    """One bad record: a retried duplicate, an invalid change, a type clash or broken JSON."""
    kind = rng.randrange(4)
    if kind == 0:
        return previous
    if kind == 3:
        return previous[: len(previous) // 2]
    record = orjson.loads(previous)
    record["id"] += "-x"
    change = record["changes"][0]
    if kind == 1:
        change["value"] = 2.0**63  # SPEC v1.1 takes floats, but only below 2^63: invalid_change
    else:
        change["type"] = "LWW" if change["type"] != "LWW" else "Set"
    return orjson.dumps(record)


def write(path: Path, count: int, **options: Any) -> int:
    """Write `count` records as JSON lines; returns the file's size in bytes."""
    size = 0
    with path.open("wb") as out:
        for line in responses(count, **options):
            out.write(line + b"\n")
            size += len(line) + 1
    return size
