"""A round's events as the compiled decider routes them: the outbox frames the processor would
pack, on the partitions Kafka's default partitioner picks, as record batches byte for byte the
producer's own."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from typing import Any, cast

import orjson
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from streams import _native
from streams.engine.native_engine import NativeStateCache
from streams.rounds.processor import EVENT, InRecord, OutRecord, RoundProcessor, pack_frames
from streams.storage.round_store import RedisStateStore
from workers.partitioner import CachedPartitioner
from workers.services.prepared_batch import PreparedBatch
from workers.tools.workload import responses


@given(st.binary(max_size=64))
def test_the_hash_is_kafkas_murmur2(key: bytes) -> None:
    assert _native.murmur2(key) & 0x7FFFFFFF == murmur2(key) & 0x7FFFFFFF


def _records(payloads: Sequence[tuple[bytes, bytes]], timestamp: int, state: tuple[int, int, int]) -> bytes:
    builder = DefaultRecordBatchBuilder(2, 0, 0, *state, 1 << 24)
    for offset, (key, value) in enumerate(payloads):
        assert builder.append(offset, timestamp, key, value, []) is not None
    return bytes(builder.build())


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=300), st.binary(max_size=3000)),
                min_size=1, max_size=30),
       st.integers(0, 2**40), st.integers(0, 2**15 - 1), st.integers(0, 2**31 - 1))
def test_a_prepared_batch_is_the_producers_own(payloads: list[tuple[bytes, bytes]], producer_id: int,
                                                epoch: int, sequence: int) -> None:
    body = b"".join(_record_bytes(offset, key, value) for offset, (key, value) in enumerate(payloads))
    batch = PreparedBatch(len(payloads), body)
    batch._set_producer_state(producer_id, epoch, sequence)
    built = batch._build()
    assert built == _records(payloads, batch._timestamp, (producer_id, epoch, sequence))
    parsed = DefaultRecordBatch(bytearray(built))
    assert parsed.validate_crc() and parsed.producer_id == producer_id
    assert batch.record_count() == len(payloads) and batch.size() == len(built)
    assert batch.append(timestamp=None, key=b"k", value=b"v") is None  # closed


def _record_bytes(offset: int, key: bytes, value: bytes) -> bytes:
    """One record of a batch, as the producer writes it (timestamp delta 0, no headers)."""
    full = _records([(b"", b"")] * offset + [(key, value)], 0, (-1, -1, 0))
    whole = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, 0, 1 << 24)
    for at in range(offset):
        whole.append(at, 0, b"", b"", [])
    return full[len(whole.build()):]


def _round(count: int) -> tuple[dict[int, list[InRecord]], NativeStateCache]:
    """A decided and applied round over three input partitions; some records keyed otherwise
    than by their message id."""
    values = list(responses(count, messages=40, identities=30, bad_share=0.0, seed=5))
    fresh: dict[int, list[InRecord]] = {3: [], 0: [], 7: []}
    for n, value in enumerate(values):
        mid = orjson.loads(value)["message_id"].encode()
        key = None if n % 17 == 0 else b"other" if n % 23 == 0 else mid
        fresh[[3, 0, 7][zlib.crc32(mid) % 3]].append(InRecord(n, value, True, key))
    cache = NativeStateCache()
    cache.decide([r.value for new in fresh.values() for r in new])
    return fresh, cache


def test_routed_like_the_processor_and_partitioned_like_the_producer() -> None:
    fresh, cache = _round(600)
    records = [r for new in fresh.values() for r in new]
    decision = cache.apply()
    assert len(decision.events) > 600
    processor = RoundProcessor(cache, cast(RedisStateStore, None), _no_sink, "t")
    expected = processor._route(fresh, records, decision)
    starts = [0, len(fresh[3]), len(fresh[3]) + len(fresh[0])]
    frames, chunks = cache.route([r.key for r in records], starts, 12, 4096)
    assert frames == [pack_frames(o for o in expected.get(p, []) if o.kind == EVENT) for p in fresh]
    assert any(frames) and not all(frames[i] == frames[0] for i in range(3))
    # Each partition's events, in order, where the producer's partitioner puts them; batches
    # of at most 4,096 bytes of records.
    partitioner = CachedPartitioner()
    want: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in decision.events:
        want.setdefault(partitioner(key, range(12), range(12)), []).append((key, value))
    got: dict[int, list[tuple[bytes, bytes]]] = {}
    for partition, count, body in chunks:
        assert len(body) <= 4096
        parsed = list(DefaultRecordBatch(bytearray(_native.record_batch(body, count, 0, -1, -1, 0))))
        assert [r.offset for r in parsed] == list(range(count))
        got.setdefault(partition, []).extend((r.key, r.value) for r in parsed)
    assert got == want
    assert len(chunks) > 12


def test_without_events_the_outboxes_keep_nothing() -> None:
    cache = NativeStateCache()
    cache.decide([])
    cache.apply()
    assert cache.route([], [0], 12, 4096) == ([b""], [])


async def _no_sink(records: Sequence[OutRecord]) -> asyncio.Future[Any]:
    raise AssertionError(f"nothing is sent here: {len(records)}")

