"""The state changelog: a round's records, and a rebuild from them that gives back exactly what
the store holds (tallies counted again, dedupe memories trimmed), with both deciders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate.streams.engine.engine import Engine
from msgstate.streams.rounds.changelog import Logged, RoundLog, marker_key, round_log, round_records
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider, Decision
from msgstate.streams.rounds.outbox import REJECTION, STATE, OutRecord, unpack_outbox
from msgstate.streams.rounds.processor import InRecord, RoundProcessor
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import TALLY, Keys
from msgstate.streams.storage.memory import MemoryRoundStore
from msgstate.streams.storage.protocol import Evicted, Home, PartitionWrite, Writes
from msgstate.streams.storage.rebuild import (
    ChangelogState,
    Delete,
    Push,
    SetFence,
    SetFields,
    restore_commands,
)
from msgstate.workers.cli.publish import record_key
from msgstate.workers.tools.workload import responses
from tests.unit import strategies as ws
from tests.unit.helpers import add, line

WINDOW = 5  # small, so that ids leave the dedupe memories
PARTITIONS = 3


class Sink:
    """Takes the outputs; Kafka acknowledges them at once, or never (`ack`)."""

    def __init__(self, *, ack: bool = True) -> None:
        self.ack = ack
        self.sent: list[OutRecord] = []
        self.logged: list[tuple[int, bytes, bytes | None]] = []  # (changelog partition, key, value)
        self.calls: list[list[tuple[int, bytes, bytes | None]]] = []  # the same, call by call

    async def __call__(self, records: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
        self.sent += records
        for p, items in logged.items():
            self.sent += [OutRecord(STATE, key, value or b"") for key, value in items]
            self.logged += [(p, key, value) for key, value in items]
        self.calls.append(self.logged[len(self.logged) - sum(map(len, logged.values())):])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.ack:
            future.set_result(None)
        return future


@pytest.fixture(params=["python", "compiled"])
def decider(request: pytest.FixtureRequest) -> Decider:
    if request.param == "python":
        return PythonDecider(Engine(), window=WINDOW)
    return CompiledDecider(window=WINDOW)


def rounds_of(values: list[bytes], keys: Keys, size: int) -> list[dict[int, list[InRecord]]]:
    """The records as a topic of `keys.partitions` partitions holds them, fetched `size` at a time."""
    offsets = [0] * keys.partitions
    placed: list[tuple[int, InRecord]] = []
    for value in values:
        key = record_key(value)
        # An erasure goes to every partition (SPEC section 3a); another record without a key
        # to the first.
        everywhere = key is None and b'"erase_identity"' in value
        for p in (range(keys.partitions) if everywhere else
                  [0 if key is None else keys.partition_of(key.decode())]):
            placed.append((p, InRecord(offsets[p], value, True, key)))
            offsets[p] += 1
    out = []
    for at in range(0, len(placed), size):
        batch: dict[int, list[InRecord]] = {}
        for p, record in placed[at:at + size]:
            batch.setdefault(p, []).append(record)
        out.append(batch)
    return out


def rebuilt(keys: Keys, records: Sequence[OutRecord]) -> MemoryRoundStore:
    state = ChangelogState()
    for r in records:
        state.take(r.key, r.value or None)
    store = MemoryRoundStore(keys)
    for p, log in state.partitions.items():
        for command in restore_commands(keys, p, log, WINDOW):
            if isinstance(command, Delete):
                store.hashes.pop(command.key, None)
                store.lists.pop(command.key, None)
            elif isinstance(command, SetFields):
                store.hashes.setdefault(command.key, {}).update(command.fields)
            elif isinstance(command, Push):
                store.lists.setdefault(command.key, []).extend(command.items)
            elif isinstance(command, SetFence):
                store.hashes.setdefault(command.key, {})[b"offset"] = b"%d" % command.offset
    return store


def live(store: MemoryRoundStore) -> tuple[dict[str, dict[bytes, bytes]], dict[str, list[bytes]]]:
    """The state keys (fences and outboxes aside) that hold something."""
    hashes = {k: v for k, v in store.hashes.items() if v and not k.endswith(":fence")}
    lists = {k: v for k, v in store.lists.items() if v and not k.endswith(":outbox")}
    return hashes, lists


async def test_a_rebuild_from_the_changelog_gives_back_what_the_store_holds(decider: Decider) -> None:
    keys = Keys("t", partitions=PARTITIONS)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(decider, store, sink, "t")
    values = list(responses(1500, messages=12, identities=30, bad_share=0.05, seed=7))
    for batch in rounds_of(values, keys, 40):
        await processor.process(batch)
    logged = [r for r in sink.sent if r.kind == STATE]
    again = rebuilt(keys, logged)
    assert live(again) == live(store)
    assert any(len(ids) == WINDOW for ids in live(store)[1].values())  # windows were trimmed
    for p in range(PARTITIONS):
        assert again.fence(p)[1] == store.fence(p)[1]
    # Tallies are counted again, never logged.
    assert not any(orjson.loads(r.key)[1] == TALLY for r in logged if r.key != marker_key(0)
                   and len(orjson.loads(r.key)) > 1)


@pytest.mark.parametrize("engine", ["python", "compiled"])
async def test_a_rebuild_gives_back_the_v1_1_state_deletions_erasures_and_caps(engine: str) -> None:
    registry: dict[str, Any] = {"reactions": {"type": "Set", "max_values": 3}}
    decider: Decider = (PythonDecider(Engine(registry), window=WINDOW) if engine == "python"
                        else CompiledDecider(registry, window=WINDOW))
    keys = Keys("t", partitions=PARTITIONS)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(decider, store, sink, "t")
    values = list(responses(1200, messages=10, identities=12, bad_share=0.02, seed=9,
                            object_share=0.2))
    mids = sorted({orjson.loads(v)["message_id"] for v in values[:200] if record_key(v)})
    values[300:300] = [orjson.dumps({"kind": "delete_message", "id": "d-1", "message_id": mids[0],
                                     "identity_id": "mod"})]
    values[600:600] = [orjson.dumps({"kind": "erase_identity", "id": "e-1",
                                     "identity_id": "layer:///identities/user3"})]
    for batch in rounds_of(values, keys, 40):
        await processor.process(batch)
    hashes, _ = live(store)
    assert any(k.endswith(":msg") and b"deleted" in v for k, v in hashes.items())
    assert any(":idx:" in k for k in hashes) and any(k.endswith(":erasures") for k in hashes)
    assert live(rebuilt(keys, [r for r in sink.sent if r.kind == STATE])) == live(store)


async def test_a_round_logs_each_key_once_with_its_last_value_then_where_it_is_complete(
        decider: Decider) -> None:
    keys = Keys("t", partitions=1)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(decider, store, sink, "t")
    await processor.process({0: [
        InRecord(0, line("r1", add("LWW", "c", "red")), True, b"m1"),
        InRecord(1, line("r2", add("LWW", "c", "blue")), True, b"m1"),
    ]})
    (entry,) = store.outbox(0)
    logged = [r for r in unpack_outbox(entry) if r.kind == STATE]
    by_key = {tuple(orjson.loads(r.key)): r.value for r in logged}
    assert len(by_key) == len(logged)  # one record per key
    assert by_key[(0, "vals", "m1", "root", "c\0alice")] == b'"blue"'
    assert by_key[(0, "meta", "m1", "root", "v")] == b"2"
    # The message's ids in one record, keyed by the last: taken in the round ending at offset 1.
    assert by_key[(0, "ids", "m1", "", "r2")] == b'[1,"r1","r2"]'
    assert (0, "ids", "m1", "", "r1") not in by_key
    assert logged[-1] == OutRecord(STATE, marker_key(0), b"1")  # complete up to offset 1


async def test_ids_that_leave_the_window_are_tombstoned(decider: Decider) -> None:
    keys = Keys("t", partitions=1)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(decider, store, sink, "t")
    for offset in range(WINDOW + 2):
        await processor.process({0: [InRecord(offset, line(f"r{offset}", add("Set", "s", offset)),
                                              True, b"m1")]})
    tombstones = [orjson.loads(r.key)[-1] for r in sink.sent if r.kind == STATE and r.value == b""]
    assert tombstones == ["r0", "r1"]


def test_a_rebuild_keeps_a_windows_newest_ids_of_records_whose_first_ids_left_it() -> None:
    keys = Keys("t", partitions=1)
    state = ChangelogState()
    for key_id, value in [("r3", b'[7,"r1","r2","r3"]'), ("r6", b'[9,"r4","r5","r6"]'),
                          ("r1", None), ("r2", None),  # tombstones naming no record
                          ("r9", b'[12,"r7","r8","r9"]'), ("r3", None)]:  # r1-r3's record gone
        state.take(orjson.dumps([0, "ids", "m1", "", key_id]), value)
    assert state.unreadable == 0
    assert state.partitions[0].ids["m1"]["r3"] is None  # the record the tombstone's id keyed
    pushed = [c for c in restore_commands(keys, 0, state.partitions[0], WINDOW) if isinstance(c, Push)]
    assert pushed == [Push(keys.seen("m1"), [b"r5", b"r6", b"r7", b"r8", b"r9"])]


@pytest.mark.parametrize("value", [b"12 0", b"[12]", b'["12","r1"]', b"[12,1]", b"{}"])
def test_an_ids_record_of_another_form_is_named_unreadable_and_restores_nothing(value: bytes) -> None:
    state = ChangelogState()
    state.take(orjson.dumps([0, "ids", "m1", "", "r1"]), value)
    assert state.unreadable == 1
    assert not state.partitions[0].ids


async def test_a_message_whose_records_are_keyed_otherwise_is_logged_where_its_state_lives(
        decider: Decider) -> None:
    keys = Keys("t", partitions=4)
    message = next(f"m{n}" for n in range(100) if keys.partition_of(f"m{n}") != 0)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(decider, store, sink, "t")
    await processor.process({0: [InRecord(0, line("r1", add("LWW", "c", 1), message=message))]})
    logged = [r for r in sink.sent if r.kind == STATE]
    assert {orjson.loads(r.key)[0] for r in logged} == {0, keys.partition_of(message)}
    # Produced to the partition the key names, though partition 0's outbox carries them all.
    assert all(orjson.loads(key)[0] == p for p, key, _ in sink.logged)
    (entry,) = store.outbox(0)
    assert sorted(r.key for r in unpack_outbox(entry) if r.kind == STATE) == sorted(
        key for _, key, _ in sink.logged)
    assert live(rebuilt(keys, logged)) == live(store)


async def test_an_earlier_holders_changelog_records_are_produced_again_to_their_partitions(
        decider: Decider) -> None:
    keys = Keys("t", partitions=4)
    message = next(f"m{n}" for n in range(100) if keys.partition_of(f"m{n}") != 0)
    store, crashed = MemoryRoundStore(keys), Sink(ack=False)
    # A record keyed otherwise: partition 0's outbox carries records of another partition.
    await RoundProcessor(decider, store, crashed, "t").process(
        {0: [InRecord(0, line("r1", add("LWW", "c", 1), message=message))]})
    sink = Sink()
    await RoundProcessor(CompiledDecider(window=WINDOW), store, sink, "t").process(
        {0: [InRecord(1, line("r2", add("LWW", "c", 2)), True, b"m1")]})
    (first,), (replayed, _) = crashed.calls, sink.calls
    assert {p for p, _, _ in first} == {0, keys.partition_of(message)}
    assert replayed == first


def test_a_write_the_changelog_cannot_log_is_an_error_not_a_silent_gap() -> None:
    # A count on a kind that is not derived, a list other than a dedupe memory: a new kind of
    # state must say how it is logged (see DERIVED) before a worker can write it.
    for ref, op in ((("vals", "m1", "root"), "I"), (("meta", "m1", "root"), "L")):
        writes = Writes([ref], orjson.dumps([op, 1, "f", "1"]))
        with pytest.raises(ValueError, match="cannot log"):
            round_records(writes, lambda _: 0, {0: 0})


class Recording(MemoryRoundStore):
    """A memory store that keeps every outbox entry it was given."""

    def __init__(self, keys: Keys) -> None:
        super().__init__(keys)
        self.entries: list[tuple[int, bytes]] = []

    async def persist(self, parts: Sequence[PartitionWrite], writes: Writes, home: Home) -> Evicted:
        self.entries += [(w.assignment.partition, w.outbox) for w in parts]
        return await super().persist(parts, writes, home)


class Checked(CompiledDecider):
    """The compiled core's changelog records, each round checked against the reference's
    making of them (`round_log`) from the same writes: byte for byte, in order."""

    def apply(self) -> Decision:
        self.decision = super().apply()
        return self.decision

    def changelog(self, where: Callable[[str], int], last: Mapping[int, int]) -> RoundLog:
        log = super().changelog(where, last)
        assert log == round_log(self.decision.writes, where, last)
        assert all(records[-1][0] == marker_key(p) for p, records in log.records.items()
                   if p in last)
        return log


def in_key_order(entry: bytes) -> tuple[list[OutRecord], list[OutRecord]]:
    """An outbox entry's events and rejections in order, and its changelog records by key (the
    deciders may write a round's keys in another order)."""
    records = unpack_outbox(entry) if entry else []
    return [r for r in records if r.kind != STATE], sorted(r for r in records if r.kind == STATE)


LOGGED = settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@LOGGED
@given(st.one_of(ws.workloads, st.lists(ws.lines(with_removals=False), min_size=1, max_size=40)),
       ws.registries, st.integers(1, 12))
def test_both_deciders_log_the_same_records_to_the_same_partitions(
        values: list[bytes], registry: dict[str, Any], size: int) -> None:
    """The same outbox entries (events, rejections, then the changelog's frames) and the same
    changelog records produced to the same partitions, tombstones too; the compiled core's
    records in the order the reference makes them of its writes."""
    both_log_alike(values, registry, size)


@LOGGED
@given(ws.capped_workloads, ws.capped_registries, st.integers(1, 12))
def test_both_deciders_log_capped_rounds_alike(values: list[bytes], registry: dict[str, Any],
                                               size: int) -> None:
    both_log_alike(values, registry, size)


def both_log_alike(values: list[bytes], registry: dict[str, Any], size: int) -> None:
    keys = Keys("t", partitions=PARTITIONS)
    runs: dict[str, tuple[Recording, Sink]] = {}
    for name, decider in (("python", PythonDecider(Engine(registry), window=WINDOW)),
                          ("compiled", Checked(registry, window=WINDOW))):
        store, sink = Recording(keys), Sink()
        processor = RoundProcessor(decider, store, sink, "t")
        for batch in rounds_of(values, keys, size):
            asyncio.run(processor.process(batch))
        runs[name] = store, sink
    (python, python_sink), (compiled, compiled_sink) = runs["python"], runs["compiled"]
    assert [(p, in_key_order(e)) for p, e in compiled.entries] == [
        (p, in_key_order(e)) for p, e in python.entries]
    # By key, a key's records kept in their order (a response id logged, then tombstoned when
    # the round's own ids push it out of a short dedupe window).
    assert ([sorted(call, key=lambda r: r[:2]) for call in compiled_sink.calls]
            == [sorted(call, key=lambda r: r[:2]) for call in python_sink.calls])
    assert python_sink.logged and python.entries


async def test_the_compiled_keys_escape_ids_as_orjson_does() -> None:
    keys = Keys("t", partitions=1)
    store, sink = MemoryRoundStore(keys), Sink()
    processor = RoundProcessor(Checked(window=WINDOW), store, sink, "t")
    odd = 'm"\\\x01\x1f\u2028é😀'
    await processor.process({0: [InRecord(0, line("r\n1", add("LWW", "c", "x"), message=odd,
                                                  identity="a\x01b", part="p\x7f"), True,
                                          odd.encode())]})
    assert not [r for r in sink.sent if r.kind == REJECTION]
    assert [orjson.loads(key) for _, key, _ in sink.logged] == [
        [0, "meta", odd, "p\x7f", "v"], [0, "meta", odd, "p\x7f", "t:c"],
        [0, "vals", odd, "p\x7f", "c\0a\x01b"], [0, "ids", odd, "", "r\n1"], [0]]
