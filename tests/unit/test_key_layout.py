"""The Redis key layout: every key of a partition in one slot, the partitions spread evenly over
a cluster's masters, and readers finding a message where Kafka's partitioner put it."""

from __future__ import annotations

from collections import Counter

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from msgstate.schemas.exceptions import ConfigError
from msgstate.streams.storage.layout import META, SEEN, TALLY, VALUES, Keys, state_ref
from msgstate.workers.config import Settings
from msgstate.workers.services.state_worker import check_partitions


@pytest.mark.parametrize(("partitions", "masters"), [(12, 3), (12, 4), (6, 3), (24, 3), (4, 2)])
def test_partitions_spread_evenly_over_the_masters(partitions: int, masters: int) -> None:
    keys = Keys("ms", "msgstate.responses", partitions)
    # redis-cli --cluster create gives each master one range of 16384 / masters slots.
    owners = Counter(slot * masters // 16384 for _, _, slot in keys.slot_map())
    assert sorted(owners.values()) == [partitions // masters] * masters
    assert len({tag for _, tag, _ in keys.slot_map()}) == partitions


@given(st.text(max_size=40), st.text(max_size=10), st.integers(0, 11))
def test_every_key_of_a_partition_is_in_its_slot(message: str, part: str, partition: int) -> None:
    keys = Keys("ms")
    slot = key_slot(keys.fence(partition).encode())
    assert key_slot(keys.outbox(partition).encode()) == slot
    for kind in (META, VALUES, TALLY, SEEN):
        assert key_slot(keys.state((kind, message, part), partition).encode()) == slot


@given(st.text(min_size=1, max_size=60))
def test_readers_find_a_message_where_kafkas_partitioner_puts_it(message: str) -> None:
    keys = Keys("ms", "t", 12)
    wanted = DefaultPartitioner()(message.encode(), list(range(12)), list(range(12)))
    assert keys.partition_of(message) == wanted
    assert keys.meta(message, "root") == keys.state((META, message, "root"), wanted)


def test_a_message_id_cannot_break_out_of_its_braces() -> None:
    keys = Keys("ms")
    assert keys.seen("a}b{c%d").endswith(":{a%7Db%7Bc%25d}:ids")
    with pytest.raises(ConfigError, match="braces"):
        _ = Settings(key_prefix="ms{x}").keys


def test_a_worker_counting_partitions_otherwise_than_the_topic_refuses_to_start() -> None:
    check_partitions("t", 12, 12)
    with pytest.raises(ConfigError, match="topic t has 24 partitions but MSGSTATE_PARTITIONS is 12"):
        check_partitions("t", 24, 12)


@given(st.text(max_size=40), st.text(max_size=10), st.sampled_from([META, VALUES, TALLY, SEEN]),
       st.integers(0, 11))
def test_a_state_key_reads_back_as_its_reference(message: str, part: str, kind: str, partition: int) -> None:
    keys = Keys("ms", "msgstate.responses", 12)
    ref = (kind, message, "" if kind == SEEN else part)
    key = keys.state(ref, partition)
    assert key.startswith(keys.head(partition))
    assert state_ref(key[len(keys.head(partition)):]) == ref


def test_a_partitions_own_keys_and_foreign_ones_are_no_state_refs() -> None:
    keys = Keys("ms")
    for key in (keys.fence(3), keys.outbox(3), keys.head(3) + "{m}:other:root", keys.head(3) + "x"):
        assert state_ref(key[len(keys.head(3)):]) is None
