"""Response ids: valid on the wire, unique, and ordered by creation time."""

from __future__ import annotations

import concurrent.futures

from msgstate.schemas.limits import MAX_RESPONSE_ID
from msgstate.streams.sdk.ids import ResponseIds


def test_ids_increase_even_within_one_millisecond_and_when_the_clock_goes_back() -> None:
    ids = ResponseIds()
    made = [ids.new(1_000), ids.new(1_000), ids.new(1_000), ids.new(999), ids.new(1_001)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 28 and i.startswith("r-") and len(i) <= MAX_RESPONSE_ID for i in made)


def test_ids_from_many_threads_are_unique() -> None:
    ids = ResponseIds()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: ids.new(), range(2000)))
    assert len(set(made)) == 2000


def test_later_milliseconds_sort_later() -> None:
    ids = ResponseIds()
    assert ids.new(5) < ids.new(6) < ids.new(2**40)
