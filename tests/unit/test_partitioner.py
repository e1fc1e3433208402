"""The cached partitioner places keys exactly where Kafka's default (murmur2) one does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from msgstate.workers.partitioner import CachedPartitioner


@given(st.lists(st.binary(max_size=40), max_size=50), st.integers(1, 64))
def test_same_partition_as_kafkas_default(keys: list[bytes], count: int) -> None:
    partitions = list(range(count))
    cached = CachedPartitioner(size=8)  # small, so the cache is also cleared on the way
    for key in keys + keys:
        assert cached(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    assert CachedPartitioner()(None, [0, 1, 2], [2]) == 2
