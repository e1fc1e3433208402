"""How the state worker gathers a round: the buffered records and those fetched right after."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from msgstate.workers.services.state_worker import FETCH_MAX, Fetched, StateWorker

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def _records(tp: TopicPartition, first: int, count: int) -> list[ConsumerRecord[Any, Any]]:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"{}", None, 1, 2, [])
            for offset in range(first, first + count)]


class _Consumer:
    """Answers getmany from a script, recording how many records each call allowed and where
    partitions were sought."""

    def __init__(self, *answers: Fetched) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []
        self.sought: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Fetched:
        self.asked.append(max_records)
        return self.answers.pop(0) if self.answers else {}


def _fetch(consumer: _Consumer) -> Fetched:
    worker = StateWorker.__new__(StateWorker)
    worker.consumer = consumer
    return asyncio.run(worker._fetch())


def test_records_fetched_after_the_buffered_ones_join_their_round() -> None:
    consumer = _Consumer({A: _records(A, 0, 3)}, {A: _records(A, 3, 2), B: _records(B, 7, 1)})
    fetched = _fetch(consumer)
    assert [r.offset for r in fetched[A]] == [0, 1, 2, 3, 4]
    assert [r.offset for r in fetched[B]] == [7]
    assert consumer.asked == [FETCH_MAX, FETCH_MAX - 3]


def test_records_that_do_not_follow_on_are_read_again_next_round() -> None:
    # A seek between the two fetches (a rebalance) sent partition A back to offset 1.
    consumer = _Consumer({A: _records(A, 0, 3)}, {A: _records(A, 1, 4), B: _records(B, 5, 2)})
    fetched = _fetch(consumer)
    assert [r.offset for r in fetched[A]] == [0, 1, 2]
    assert [r.offset for r in fetched[B]] == [5, 6]
    assert consumer.sought == {A: 1}


def test_a_full_fetch_or_an_empty_one_is_not_followed_by_another() -> None:
    full = _Consumer({A: _records(A, 0, FETCH_MAX)})
    assert len(_fetch(full)[A]) == FETCH_MAX
    assert full.asked == [FETCH_MAX]
    empty = _Consumer({})
    assert _fetch(empty) == {}
    assert empty.asked == [FETCH_MAX]

