"""Faults injected into the real stack: each run must end equal to a replay of the topic.

The broker and Redis scenarios stop and start services, so this module runs on a stack of
its own (private_stack), not the session's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.streams.engine.engine import Engine
from msgstate.streams.rounds.changelog import Logged
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.outbox import EVENT, OutRecord
from msgstate.streams.rounds.processor import InRecord, RoundProcessor, Sink
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.reader import SummaryReader
from msgstate.streams.storage.redis_round_store import RedisRoundStore
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.fault_check import Record, compare, replay_topic
from msgstate.workers.tools.fault_run import SCENARIOS, SOAK_KILLS, STACKS, evidence_lines, fault_met, run
from msgstate.workers.tools.soak import soak, total
from msgstate.workers.tools.stack import private_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(stack_settings: Settings) -> Iterator[Settings]:
    with private_stack(stack_settings, partitions=4) as settings:
        yield settings


def fresh(settings: Settings) -> Settings:
    tag = f"f{uuid.uuid4().hex[:10]}"
    return settings.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in STACKS and s != "soak"])
def test_fault_scenario_loses_nothing_and_applies_nothing_twice(
        own_stack: Settings, tmp_path: Path, scenario: str) -> None:
    figures = run(fresh(own_stack), scenario, records=1600, rate=400, logs=tmp_path)
    assert figures.acknowledged == figures.published == figures.in_topic
    assert figures.faults >= 2
    assert figures.worker_crashes == 0, f"a worker died by itself; logs in {tmp_path}"
    assert figures.events_expected > 1000 and figures.rejections_expected > 0
    assert figures.clean, figures.as_dict()
    assert figures.passed


@pytest.mark.timeout(600)
def test_a_short_soak_is_clean_and_its_kills_happened(own_stack: Settings, tmp_path: Path) -> None:
    runs = soak(own_stack, runs=3, records=1200, rate=400, logs=tmp_path, tag=f"s{uuid.uuid4().hex[:10]}")
    for figures in runs:
        assert figures.acknowledged == figures.published == figures.in_topic == 1200
        assert figures.worker_crashes == 0, f"a worker died by itself; logs in {tmp_path}"
        # Each kill hit a running worker, which died of the signal.
        assert figures.worker_kills == figures.faults == SOAK_KILLS
        assert figures.events_expected > 1000 and figures.rejections_expected > 0
        assert figures.clean, figures.as_dict()
    summed = total(runs)
    print("\n".join(evidence_lines(summed)))
    assert summed.passed
    assert (summed.evidence["runs"], summed.evidence["runs_not_clean"]) == (3, 0)
    assert summed.worker_kills == summed.evidence["kills_planned"] == 3 * SOAK_KILLS
    assert summed.evidence["workers_at_most"] == 2
    assert summed.published == 3600
    # A kill that missed its worker does not pass.
    assert not fault_met("soak", {**summed.evidence, "worker_kills": 3 * SOAK_KILLS - 1})


def acknowledged() -> asyncio.Future[Any]:
    """What the producer's sink returns once Kafka acknowledged: here, at once."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def _decider(engine: str = "native") -> Decider:
    if engine == "python":
        return PythonDecider(Engine(None), window=DEDUPE_WINDOW)
    return CompiledDecider(window=DEDUPE_WINDOW)


VALUES = [
    orjson.dumps({"id": f"r{i}", "message_id": "m1", "identity_id": f"u{i % 3}", "changes": [
        {"operation": "add", "type": "Set", "name": "reactions", "value": f"v{i % 4}"}]})
    for i in range(12)
] + [b"not json"]


async def test_the_check_sees_a_lost_summary_a_missing_event_and_a_second_application(
        settings: Settings) -> None:
    """The comparison used by the fault runs can fail: corrupt a correct result three ways."""
    expected = replay_topic([Record(0, offset, b"m1", value) for offset, value in enumerate(VALUES)])
    # The worker's own processor writes the same records into Redis.
    async_client = aioredis.from_url(settings.redis)
    try:
        async def sink(out: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
            return acknowledged()

        processor = RoundProcessor(_decider(),
                                   RedisRoundStore(async_client, settings.keys),
                                   sink, settings.topics.responses)
        await processor.process({0: [InRecord(i, v) for i, v in enumerate(VALUES)]})
    finally:
        await async_client.aclose()
    client = redis.Redis.from_url(settings.redis)
    try:
        events = list(expected.events.values())
        rejections = list(expected.rejections.values())
        clean = compare(settings, client, expected, events, rejections)
        assert (clean.parts, clean.parts_differing, clean.events_missing) == (1, 0, 0)
        assert (len(events), len(rejections), clean.rejections_missing) == (12, 1, 0)
        # A repeat (a worker that took the partition over produced it again) is counted apart.
        again = compare(settings, client, expected, [*events, events[0]], [*rejections, rejections[0]])
        assert (again.events_repeated, again.rejections_repeated) == (1, 1)
        assert (again.events_conflicting, again.rejections_unexpected, again.parts_differing) == (0, 0, 0)

        keys = settings.keys
        client.hdel(keys.values("m1", "root"), next(iter(client.hkeys(keys.values("m1", "root")))))
        twice = {**rejections[0], "partition": 0, "offset": 3, "reason": "duplicate"}
        bad = compare(settings, client, expected, events[1:], [*rejections, twice])
        assert bad.parts_differing == 1
        assert bad.events_missing == 1
        assert bad.rejections_unexpected == 1
    finally:
        client.close()


@pytest.mark.parametrize("engine", ["native", "python"])
async def test_a_stale_holder_cannot_write_after_the_partition_moved(settings: Settings, engine: str) -> None:
    """Worker A holds partition 0; B takes it over (rebalance). A's next batch is refused
    inside the Redis script, and nothing of it reaches Redis or Kafka."""
    client = aioredis.from_url(settings.redis)
    try:
        keys = settings.keys
        outputs: dict[str, list[OutRecord]] = {"a": [], "b": []}

        def sink_for(name: str) -> Sink:
            async def sink(out: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
                outputs[name].extend(out)
                return acknowledged()
            return sink

        def record(i: int, who: str) -> InRecord:
            return InRecord(i, orjson.dumps({
                "id": f"r{i}", "message_id": "m", "identity_id": who,
                "changes": [{"operation": "add", "type": "LWW", "name": "pick", "value": who}]}))

        a = RoundProcessor(_decider(engine), RedisRoundStore(client, keys), sink_for("a"), "t")
        b = RoundProcessor(_decider(engine), RedisRoundStore(client, keys), sink_for("b"), "t")
        await a.process({0: [record(0, "alice")]})
        await b.process({0: [record(1, "bob")]})  # B takes the partition: a new token
        assert (await a.process({0: [record(2, "mallory")]})).fenced == {0}
        summary = SummaryReader(redis.Redis.from_url(settings.redis), settings.keys).get_summary("m")
        assert summary["states"]["pick"]["values"] == {"alice": "alice", "bob": "bob"}
        assert summary["version"] == 2
        # B also re-produced what A's outbox still held (events are at least once); nothing of
        # mallory's batch went anywhere.
        ids = {who: [orjson.loads(o.value)["event_id"] for o in out if o.kind == EVENT]
               for who, out in outputs.items()}
        assert ids["a"] == ["m/r0/pick"]
        assert ids["b"][-1] == "m/r1/pick" and set(ids["b"]) <= {"m/r0/pick", "m/r1/pick"}
        fence = await client.hgetall(keys.fence(0))
        assert int(fence[b"offset"]) == 1
    finally:
        await client.aclose()


@pytest.mark.parametrize("engine", ["native", "python"])
async def test_a_round_with_a_stale_partition_applies_the_others(settings: Settings, engine: str) -> None:
    """A holds partitions 0 and 1; B takes 1. A's next round has records of both: the script
    refuses it whole, A drops partition 1 and applies partition 0 alone."""
    client = aioredis.from_url(settings.redis)
    try:
        keys = settings.keys
        sent: list[OutRecord] = []

        async def sink(out: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
            sent.extend(out)
            return acknowledged()

        def record(offset: int, message: str, who: str) -> InRecord:
            return InRecord(offset, orjson.dumps({
                "id": f"r{offset}", "message_id": message, "identity_id": who,
                "changes": [{"operation": "add", "type": "LWW", "name": "pick", "value": who}]}))

        a = RoundProcessor(_decider(engine), RedisRoundStore(client, keys), sink, "t")
        b = RoundProcessor(_decider(engine), RedisRoundStore(client, keys), sink, "t")
        await a.process({0: [record(0, "m0", "alice")], 1: [record(0, "m1", "alice")]})
        await b.process({1: [record(1, "m1", "bob")]})
        stats = await a.process({0: [record(1, "m0", "carol")], 1: [record(2, "m1", "mallory")]})
        assert stats.fenced == {1}
        assert stats.applied == {0: 1}
        reader = SummaryReader(redis.Redis.from_url(settings.redis), settings.keys)
        assert reader.get_summary("m0")["states"]["pick"]["values"] == {"alice": "alice", "carol": "carol"}
        assert reader.get_summary("m1")["states"]["pick"]["values"] == {"alice": "alice", "bob": "bob"}
        assert int((await client.hgetall(keys.fence(1)))[b"offset"]) == 1
        assert int((await client.hgetall(keys.fence(0)))[b"offset"]) == 1
        assert "m1/r2/pick" not in {orjson.loads(o.value)["event_id"] for o in sent if o.kind == EVENT}
    finally:
        await client.aclose()
