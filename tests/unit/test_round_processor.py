"""The round processor's fence, retry and outbox rules, on the in-memory RoundStore.

The store speaks the Redis scripts' semantics (streams/storage/memory.py); the same rules run
against a real Redis in tests/integration/test_redis_store.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from msgstate.streams.engine.engine import Engine
from msgstate.streams.rounds.changelog import Logged
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.outbox import EVENT, REJECTION, STATE, OutRecord, unpack_outbox
from msgstate.streams.rounds.processor import InRecord, RoundProcessor
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import TALLY, VALUES, Keys
from msgstate.streams.storage.memory import MemoryRoundStore
from tests.unit.helpers import add, line

TOPIC = "responses"


class Sink:
    """Takes the outputs; Kafka's acknowledgement is a future the test completes (or fails)."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.sent: list[OutRecord] = []
        self.pending: list[asyncio.Future[Any]] = []

    async def __call__(self, records: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
        self.sent += records
        self.sent += [OutRecord(STATE, key, value or b"") for items in logged.values()
                      for key, value in items]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.ack:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.sent if r.kind == EVENT]


def vals(store: MemoryRoundStore, message: str, partition: int) -> dict[bytes, bytes]:
    """A message's values hash: in the partition its records arrived on."""
    return store.hashes[store.keys.state((VALUES, message, "root"), partition)]


def records(first: int, *lines: bytes, message: bytes = b"m1") -> list[InRecord]:
    return [InRecord(first + i, value, True, message) for i, value in enumerate(lines)]


@pytest.fixture(params=["python", "compiled"])
def decider(request: pytest.FixtureRequest) -> Decider:
    if request.param == "python":
        return PythonDecider(Engine(), window=10_000)
    return CompiledDecider()


def processor(decider: Decider, store: MemoryRoundStore, sink: Sink) -> RoundProcessor:
    # The changelog's records are tested in test_changelog.py; these count events and rejections.
    return RoundProcessor(decider, store, sink, TOPIC, retry_max=0.01, changelog=False)


async def test_a_round_persists_state_fence_and_outbox_then_trims_what_kafka_has(
        decider: Decider) -> None:
    store, sink = MemoryRoundStore(Keys("t")), Sink()
    rounds = processor(decider, store, sink)
    stats = await rounds.process({0: records(0, line("r1", add("LWW", "c", 1)),
                                             line("r2", add("FWW", "f", 1), add("FWW", "f", 2)))})
    assert stats.applied == {0: 2} and stats.events == 2 and stats.rejections == ["fww_conflict"]
    assert store.fence(0) == (1, 1)
    (entry,) = store.outbox(0)
    assert unpack_outbox(entry) == sink.sent
    assert [r.kind for r in sink.sent] == [EVENT, EVENT, REJECTION]
    assert vals(store, "m1", 0) == {b"c\0alice": b"1", b"f\0alice": b"1"}
    # Kafka acknowledged the round: the next persist drops its entry from the outbox.
    await rounds.process({0: records(2, line("r3", add("LWW", "c", 2)))})
    assert len(store.outbox(0)) == 1 and store.fence(0) == (1, 2)


async def test_records_at_or_below_the_fence_are_skipped_silently(decider: Decider) -> None:
    store, sink = MemoryRoundStore(), Sink()
    await processor(decider, store, sink).process({0: records(0, line("r1", add("Set", "s", "a")))})
    again = processor(CompiledDecider(), store, Sink())
    stats = await again.process({0: records(0, line("r1", add("Set", "s", "a")),
                                            line("r2", add("Set", "s", "b")))})
    assert stats.skipped == 1 and stats.applied == {0: 1} and stats.events == 1
    assert vals(store, "m1", 0) == {b"s\0alice": b'["a","b"]'}


async def test_a_new_holder_fences_the_old_one_which_writes_nothing(decider: Decider) -> None:
    store = MemoryRoundStore()
    old, new = processor(decider, store, Sink()), processor(CompiledDecider(), store, Sink())
    await old.process({0: records(0, line("r1", add("LWW", "c", 1))),
                       1: records(0, line("r2", add("LWW", "c", 1), message="m2"), message=b"m2")})
    await new.process({0: records(1, line("r3", add("LWW", "c", 3)))})
    stats = await old.process({0: records(1, line("r4", add("LWW", "c", 4))),
                               1: records(1, line("r5", add("LWW", "c", 5), message="m2"), message=b"m2")})
    assert stats.fenced == {0} and stats.applied == {1: 1}
    assert vals(store, "m1", 0) == {b"c\0alice": b"3"}
    assert store.fence(0) == (new.assignments[0].token, 1)
    assert vals(store, "m2", 1) == {b"c\0alice": b"5"}


async def test_a_failed_write_is_retried_and_applied_once(decider: Decider) -> None:
    store, sink = MemoryRoundStore(), Sink()
    rounds = processor(decider, store, sink)
    store.fail_before.append(RedisConnectionError("Redis is down"))
    stats = await rounds.process({0: records(0, line("r1", add("Set", "s", "a")))})
    assert stats.retries == 1 and stats.applied == {0: 1} and store.persists == 1
    assert [e["new"] for e in sink.events()] == [["a"]]


async def test_a_lost_reply_applies_once_and_produces_the_outbox_again(decider: Decider) -> None:
    store, sink = MemoryRoundStore(), Sink()
    rounds = processor(decider, store, sink)
    await rounds.process({0: records(0, line("r1", add("Set", "s", "a")))})
    # The next round is written, but its reply is lost: the processor cannot know it was.
    store.fail_after.append(RedisConnectionError("connection reset"))
    await rounds.process({0: records(1, line("r2", add("Set", "s", "b")))})
    assert store.persists == 2 and store.fence(0)[1] == 1
    assert store.hashes[store.keys.state((TALLY, "m1", "root"), 0)] == {b's\0"a"': b"1", b's\0"b"': b"1"}
    # At least once: r2's event went out from the outbox when the partition was taken again.
    assert [e["response_id"] for e in sink.events()].count("r2") >= 1
    assert all(e["response_id"] in ("r1", "r2") for e in sink.events())


async def test_an_earlier_holders_outbox_is_produced_first(decider: Decider) -> None:
    store = MemoryRoundStore()
    crashed = processor(decider, store, Sink(ack=False))
    await crashed.process({0: records(0, line("r1", add("LWW", "c", 1)))})
    assert len(store.outbox(0)) == 1  # never acknowledged
    sink = Sink()
    await processor(CompiledDecider(), store, sink).process({0: records(1, line("r2", add("LWW", "c", 2)))})
    assert [e["response_id"] for e in sink.events()] == ["r1", "r2"]


async def test_records_past_the_fence_send_the_partition_back_to_it(decider: Decider) -> None:
    store = MemoryRoundStore()
    await processor(decider, store, Sink()).process({0: records(0, line("r1", add("LWW", "c", 1)))})
    # Kafka's committed offset ran ahead of what the store holds (it lost its last writes).
    stats = await processor(CompiledDecider(), store, Sink()).process(
        {0: records(5, line("r6", add("LWW", "c", 6)))})
    assert stats.rewound == {0: 1} and not stats.applied
    assert store.fence(0)[1] == 0


async def test_release_waits_for_kafka_then_empties_the_outbox(decider: Decider) -> None:
    store, sink = MemoryRoundStore(), Sink(ack=False)
    rounds = processor(decider, store, sink)
    await rounds.process({0: records(0, line("r1", add("LWW", "c", 1)))})
    release = asyncio.ensure_future(rounds.release([0]))
    await asyncio.sleep(0)
    assert not release.done() and len(store.outbox(0)) == 1
    sink.pending[0].set_result(None)
    await release
    assert store.outbox(0) == [] and 0 not in rounds.assignments


async def test_a_round_writes_only_keys_of_the_layout(decider: Decider) -> None:
    store, keys = MemoryRoundStore(Keys("lay")), Keys("lay")
    messages = [f"m{i}{{x}}%" for i in range(5)]
    # Each message's records on the partition Kafka's default partitioner gives it.
    batch: dict[int, list[InRecord]] = {}
    for n in range(12):
        message = messages[n % 5]
        batch.setdefault(keys.partition_of(message), []).append(
            InRecord(n, line(f"r{n}", add("Set", "s", n), add("LWW", "l", n), message=message,
                             part=f"p{n % 2}"), True, message.encode()))
    batch = {p: [r._replace(offset=o) for o, r in enumerate(recs)] for p, recs in batch.items()}
    await processor(decider, store, Sink()).process(batch)
    layout = {keys.fence(p) for p in batch} | {keys.outbox(p) for p in batch}
    for message in messages:
        layout |= {keys.seen(message), keys.message(message),
                   keys.index(keys.partition_of(message), "alice")}
        for part in ("p0", "p1"):
            layout |= {keys.meta(message, part), keys.values(message, part), keys.tally(message, part)}
    written = store.state_keys()
    assert written <= layout
    assert {keys.seen(m) for m in messages} <= written


async def test_rounds_the_store_lost_in_a_failover_are_read_again_and_applied_once(
        decider: Decider) -> None:
    store, sink = MemoryRoundStore(), Sink()
    rounds = processor(decider, store, sink)
    await rounds.process({0: records(0, line("r1", add("Set", "s", "a")))})
    before = store.snapshot()
    await rounds.process({0: records(1, line("r2", add("Set", "s", "b")))})
    store.lose(before)  # the promoted replica never got the second round
    stats = await rounds.process({0: records(2, line("r3", add("Set", "s", "c")))})
    # The worker learns the store is behind, takes the partition again, and reads from its fence.
    assert stats.retries == 1 and stats.rewound == {0: 1} and not stats.applied
    stats = await rounds.process({0: records(1, line("r2", add("Set", "s", "b")),
                                             line("r3", add("Set", "s", "c")))})
    assert stats.applied == {0: 2} and store.fence(0)[1] == 2
    assert vals(store, "m1", 0) == {b"s\0alice": b'["a","b","c"]'}
    # r2's event again, with the same id: events are at least once, with stable ids.
    ids = [e["event_id"] for e in sink.events()]
    assert ids.count("m1/r2/s") == 2 and ids.count("m1/r3/s") == 1


async def test_a_store_without_cross_partition_steps_gets_one_round_per_partition(
        decider: Decider) -> None:
    store, sink = MemoryRoundStore(cross_partition=False), Sink()
    stats = await processor(decider, store, sink).process({
        0: records(0, line("r1", add("LWW", "c", 1))),
        1: records(0, line("r2", add("LWW", "c", 2), message="m2"), message=b"m2")})
    assert store.persists == 2 and stats.applied == {0: 1, 1: 1} and stats.events == 2
    assert vals(store, "m1", 0) == {b"c\0alice": b"1"} and vals(store, "m2", 1) == {b"c\0alice": b"2"}


async def test_an_erasure_on_every_partition_erases_each_partitions_messages_in_its_own_round(
        decider: Decider) -> None:
    """A fetch holding an erasure is one round per partition: each reads and writes its own
    partition's index and erasure ids. Later rounds find the erasure taken and skip it."""
    store, keys = MemoryRoundStore(Keys("er", partitions=3)), Keys("er", partitions=3)
    messages = {keys.partition_of(m): m for m in (f"m{i}" for i in range(40))}
    assert len(messages) == 3
    erase = b'{"kind": "erase_identity", "id": "e1", "identity_id": "alice"}'
    sink = Sink()
    run = processor(decider, store, sink)
    first = {p: [InRecord(0, line("r1", add("LWW", "c", p), message=m), True, m.encode()),
                 InRecord(1, line("r2", add("LWW", "c", 9), message=m, identity="bob"), True, m.encode())]
             for p, m in messages.items()}
    # The erasure reaches partition 0 in the first fetch, the others later.
    first[0].append(InRecord(2, erase, True, None))
    await run.process(first)
    assert not store.hashes.get(keys.index(0, "alice"))
    assert all(store.hashes[keys.index(p, "alice")] for p in (1, 2))  # not erased there yet
    later = {p: [InRecord(2, erase, True, None), InRecord(3, erase, True, None)] for p in (1, 2)}
    await run.process(later)
    for p, m in messages.items():
        assert list(vals(store, m, p)) == [b"c\0bob"]
        assert store.hashes[keys.erasures(p)] == {b"e1": b"1"}
    erased = [e for e in sink.events() if e["cause"] == "erase_identity"]
    assert sorted(e["message_id"] for e in erased) == sorted(messages.values())
