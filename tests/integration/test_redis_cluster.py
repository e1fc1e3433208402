"""The pipeline on a real Redis Cluster (three masters, a replica each): every partition's keys
in one slot, the partitions spread evenly over the masters, the same end as replay, and nothing
lost when the master holding the busiest partition dies mid-run; apps persistence and analytics
exact there with several workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from msgstate.schemas.exceptions import AppUpdateConflict
from msgstate.streams.apps.message_counter import COUNT
from msgstate.streams.apps.persistence import AppPersistence
from msgstate.streams.apps.persistence_model import AssociationModel, AssociationRecord
from msgstate.streams.sdk import CHANGE, ChangeEvent
from msgstate.workers.config import Settings, Topics
from msgstate.workers.services.analytics_store import AnalyticsStore, value_member, values_set
from msgstate.workers.tools import stack
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .apps_harness import AppsDeployment, chat_message
from .http_helpers import running_http
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload
from .processes import WorkerProcess
from .test_analytics import change
from .test_pipeline_removals import check_removals
from .test_repartition import check_repartition
from .test_sdk import PollModel, client_for


@pytest.fixture(scope="module")
def cluster(stack_settings: Settings) -> Iterator[Settings]:
    with stack.private_stack(stack_settings, partitions=12, redis_masters=3) as settings:
        yield settings


def fresh(settings: Settings) -> Settings:
    tag = f"c{uuid.uuid4().hex[:10]}"
    return settings.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")


def owner(client: redis.RedisCluster, key: str) -> int:
    """The port of the master serving a key's slot."""
    node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return int(node.port)


def test_the_partitions_spread_evenly_over_the_masters(cluster: Settings) -> None:
    client = cluster.redis_client()
    assert isinstance(client, redis.RedisCluster)
    keys = cluster.keys
    masters = Counter(owner(client, keys.fence(p)) for p in range(keys.partitions))
    for partition, tag, slot in keys.slot_map():
        master = owner(client, keys.fence(partition))
        print(f"partition {partition:>2}  tag {tag:<28} slot {slot:>5}  master :{master}")
    assert sorted(masters.values()) == [4, 4, 4]
    client.close()


def test_the_pipeline_on_the_cluster_equals_replay(cluster: Settings, tmp_path: Path) -> None:
    settings = fresh(cluster)
    records = workload(1500, seed=31)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    try:
        pipeline.start_worker()
        pipeline.start_worker()
        pipeline.publish(records)
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def test_deletions_erasures_and_caps_on_the_cluster_equal_replay(cluster: Settings, tmp_path: Path) -> None:
    """Each round one partition, one slot: an erasure's index and ids are its partition's."""
    check_removals(fresh(cluster), tmp_path)


def test_repartition_moves_the_state_across_the_masters(cluster: Settings, tmp_path: Path) -> None:
    check_repartition(fresh(cluster), tmp_path, 1200, by_hand=True)


def test_the_sdk_the_http_api_and_msgstate_summary_read_the_cluster(cluster: Settings) -> None:
    settings = fresh(cluster)
    ensure_topics(settings)
    worker = WorkerProcess(settings, ["-m", "msgstate.workers", "worker", "-l", "warn"])
    try:
        with client_for(settings) as frodo_side, client_for(settings) as sam_side:
            frodo = frodo_side.model(PollModel, "msg-1", "frodo")
            sam = sam_side.model(PollModel, "msg-1", "sam")
            heard: list[ChangeEvent] = []
            sam.on(CHANGE, heard.append)
            frodo.responses.add_state("colors", "red")
            frodo.responses.add_state("poll_choice", "b").result(timeout=60)
            wait_for(lambda: len(heard), lambda n: n == 2, timeout=90, what="two change events")
            summary = sam_side.get_summary("msg-1")
            assert summary["version"] == 1 and summary["states"]["poll_choice"]["values"] == {"frodo": "b"}
        shown = subprocess.run([sys.executable, "-m", "msgstate.workers", "summary", "msg-1"],
                               env=worker_env(settings), cwd=ROOT, capture_output=True, check=True)
        assert orjson.loads(shown.stdout) == summary
        with running_http(settings, {"MSGSTATE_HTTP_TOKEN_KEYS": ""}) as (url, _), \
                urllib.request.urlopen(f"{url}/messages/msg-1/summary", timeout=10) as answer:
            assert orjson.loads(answer.read()) == summary
    finally:
        worker.stop()


def test_with_a_replica_wait_each_round_waits_on_its_master_and_a_lagging_replica_is_warned_of(
        cluster: Settings, tmp_path: Path) -> None:
    settings = fresh(cluster).with_(redis_wait_replicas=1, redis_wait_timeout_ms=200)
    records = workload(1200, seed=41)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    client = pipeline.redis
    assert isinstance(client, redis.RedisCluster)
    fence = settings.keys.fence(0)
    replica = client.get_node_from_key(fence, replica=True)  # type: ignore[no-untyped-call]
    lagging = {node.ports[0]: node for node in stack.cluster_nodes(settings)}[replica.port].pid()
    assert lagging is not None
    waits_before = _waits(client)
    try:
        worker = pipeline.start_worker()
        pipeline.publish(records[:600])
        pipeline.await_applied()
        # Every master ran WAITs: each holds a third of the partitions, and rounds waited there.
        assert all(_waits(client)[port] > waits_before[port] for port in waits_before), _waits(client)
        assert "replicas asked" not in worker.output()
        # A replica that stops answering: its master's rounds are warned of, once, and go on.
        os.kill(lagging, signal.SIGSTOP)
        try:
            pipeline.publish(records[600:])
            pipeline.await_applied()
        finally:
            os.kill(lagging, signal.SIGCONT)
        assert worker.output().count("acknowledged by 0 of the 1 replicas asked within 200 ms") == 1
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def _waits(client: redis.RedisCluster) -> dict[int, int]:
    """Master port -> WAIT commands it has run."""
    stats = client.info("commandstats", target_nodes=redis.RedisCluster.PRIMARIES)
    return {int(name.rpartition(":")[2]): int(info.get("cmdstat_wait", {}).get("calls", 0))
            for name, info in stats.items()}


def test_a_master_killed_mid_run_loses_nothing_and_applies_nothing_twice(
        cluster: Settings, tmp_path: Path) -> None:
    settings = fresh(cluster)
    records = workload(3000, seed=37)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    nodes = {node.ports[0]: node for node in stack.cluster_nodes(settings)}
    keys = settings.keys
    try:
        worker = pipeline.start_worker()
        pipeline.publish(records[:1500])
        wait_for(lambda: sum(o + 1 for o in pipeline.applied().values() if o >= 0),
                 lambda n: n > 300, timeout=120, what=lambda: "some records applied\n" + worker.output())
        busiest = max(pipeline.last_offsets, key=lambda p: pipeline.last_offsets[p])
        assert isinstance(pipeline.redis, redis.RedisCluster)
        victim = owner(pipeline.redis, keys.fence(busiest))
        before = pipeline.applied()[busiest]
        pid = nodes[victim].pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        pipeline.publish(records[1500:])
        # Its replica is promoted: the slot is served again, by another node.
        wait_for(lambda: _serving(pipeline.redis, keys.fence(busiest)),
                 lambda port: port not in (None, victim), timeout=60, what=lambda: "a replica promoted")
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
        # Evidence that the fault was met: the partition's rounds after the kill were written
        # to the promoted replica (its fence there moved past where it stood at the kill).
        assert _serving(pipeline.redis, keys.fence(busiest)) not in (None, victim)
        assert pipeline.applied()[busiest] == pipeline.last_offsets[busiest] > before
    finally:
        pipeline.close()
        # The old master comes back as a replica of the new one, for the tests after.
        stack.start_redis_cluster(settings, len(nodes) // 2)


def _serving(client: redis.Redis | redis.RedisCluster, key: str) -> int | None:
    """The port of the master serving the key now (None while its slot has none)."""
    assert isinstance(client, redis.RedisCluster)
    try:
        client.exists(key)  # the slot answers
    except redis.RedisError:
        return None
    return owner(client, key)


async def test_app_persistence_on_the_cluster_is_exact_under_concurrency(cluster: Settings) -> None:
    """An app's keys share one slot: its scripts run whole on the master serving it."""
    settings = fresh(cluster)
    client = settings.async_redis_client()
    other = settings.redis_client()
    try:
        store = AppPersistence(client, settings.key_prefix, "counter")
        total = AssociationRecord(AssociationModel.MISC, "total")

        async def bump(n: int) -> None:
            for _ in range(n):
                await store.increment_by_association(total, "count")

        async def add(n: int) -> None:
            for _ in range(n):
                await store.modify(rid, lambda data: {"count": data["count"] + 1})

        rid = await store.create({"count": 0})
        await asyncio.gather(*(bump(100) for _ in range(8)), *(add(20) for _ in range(6)))
        assert await store.read_by_association(total) == [{"count": 800}]
        assert await store.read(rid) == {"count": 120}
        for _ in range(3):  # one event handled three times
            await store.scoped("messages:m1:counter").increment_by_association(total, "count")
        assert await store.read_by_association(total) == [{"count": 801}]

        def spoiled(data: dict[str, Any]) -> dict[str, Any]:
            other.hincrby(store.keys.revisions, rid, 1)
            return {"count": -1}

        with pytest.raises(AppUpdateConflict):
            await store.modify(rid, spoiled, attempts=3)
        assert await store.read(rid) == {"count": 120}
    finally:
        await client.aclose()
        other.close()


APPS_MESSAGES = 6000


@pytest.mark.timeout(480)
def test_apps_on_the_cluster_count_exactly_with_three_workers_one_killed(
        cluster: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSGSTATE_APPS", "msgstate.streams.apps.message_counter:MessageCounter")
    deployment = AppsDeployment(fresh(cluster))
    half = APPS_MESSAGES // 2
    try:
        victim = deployment.start_worker()
        for _ in range(2):
            deployment.start_worker()
        deployment.publish_messages([chat_message(i, rooms=64) for i in range(half)])
        wait_for(lambda: sum(deployment.committed().values()), lambda n: n > 0, timeout=180,
                 what=lambda: "the apps workers handling messages\n" + victim.output())
        # A worker killed while messages flow: what it handled and did not commit is handled
        # again by the others, and the once tokens keep its writes from counting twice.
        victim.kill()
        deployment.workers.remove(victim)
        assert victim.stop() == -signal.SIGKILL
        deployment.publish_messages([chat_message(i, rooms=64) for i in range(half, APPS_MESSAGES)])
        deployment.await_done(timeout=360)
        [counter] = deployment.records("message-counter", COUNT)
        assert counter.data == {"count": APPS_MESSAGES}
    finally:
        deployment.close()


@pytest.mark.timeout(300)
def test_analytics_on_the_cluster_count_exactly_with_two_consumers(cluster: Settings) -> None:
    settings = fresh(cluster)
    ensure_topics(settings)
    now_ms = int(time.time() * 1000)
    names = ("reactions", "poll_choice", "colors")
    events = [change(f"m{i % 97}", f"r{i}", names[i % 3], None, [f"v{i % 5}"] if i % 3 != 1 else f"c{i % 4}",
                     "Set" if i % 3 != 1 else "FWW")
              for i in range(3000)]
    repeated = events[::10]  # a state worker that took a partition over produces these again
    ports = [stack.free_port_pair() for _ in range(2)]
    consumers = [WorkerProcess(settings, ["-m", "msgstate.workers", "analytics", "--metrics-port", str(port)],
                               name="analytics") for port in ports]
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=20)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
    client = settings.redis_client()
    group = f"{settings.app_id}-analytics"

    def members() -> tuple[str, int]:
        for consumer in consumers:
            consumer.check()
        try:
            described = admin.describe_groups([group])[group]
        except KafkaError:  # no coordinator until a consumer joined
            return "", 0
        return described["group_state"], len(described["members"])

    try:
        # Both consumers in the group first, so that each is assigned a share of the partitions.
        wait_for(members, lambda seen: seen == ("Stable", 2), timeout=120,
                 what=lambda: "\n".join(c.output() for c in consumers))
        sent = [producer.send(settings.topics.summary_changes, key=e["message_id"].encode(),
                              value=orjson.dumps(e), timestamp_ms=now_ms) for e in [*events, *repeated]]
        producer.flush(timeout=60)
        ends: dict[TopicPartition, int] = {}
        for future in sent:
            meta = future.get(timeout=30)
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        def committed() -> dict[TopicPartition, int]:
            for consumer in consumers:
                consumer.check()
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
            except KafkaError:  # no coordinator until a consumer joined
                return {}
            return {tp: meta.offset for tp, meta in offsets.items()}

        wait_for(committed, lambda seen: all(seen.get(tp) == end for tp, end in ends.items()),
                 timeout=240, what=lambda: "\n".join(c.output() for c in consumers))
        # Both consumers counted a share.
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                metrics = dict(line.split(" ", 1) for line in answer.read().decode().splitlines()
                               if not line.startswith("#"))
            assert float(metrics["msgstate_analytics_events_counted_total"]) > 0, metrics
    finally:
        for consumer in consumers:
            assert consumer.stop() == 0, consumer.output()
        producer.close(timeout=5)
        admin.close()

    store = AnalyticsStore(client, settings.key_prefix, settings.analytics_retention)
    minute = now_ms // 60_000

    def zset(key: str) -> Counter[bytes]:
        return Counter({m: int(n) for m, n in client.zrange(key, 0, -1, withscores=True)})

    # Each distinct event counted once, whichever consumer read it and however often.
    try:
        assert zset(store.keys.names(minute)) == Counter(e["name"].encode() for e in events)
        assert zset(store.keys.messages(minute)) == Counter(e["message_id"].encode() for e in events)
        assert zset(store.keys.values(minute)) == Counter(
            value_member(e["name"], v) for e in events for v in values_set(e))
    finally:
        client.close()


@pytest.mark.timeout(600)
def test_a_masters_partitions_lost_are_rebuilt_from_the_changelog_alone(
        cluster: Settings, tmp_path: Path) -> None:
    """Every key of the partitions one master serves is gone (as with a shard lost with its
    replica): `msgstate rebuild` restores those partitions only, and the workers go on to the
    end a replay of everything gives."""
    settings = fresh(cluster)
    before, after = workload(900, seed=31), workload(300, seed=32)
    pipeline = Pipeline(settings)
    try:
        pipeline.start_worker()
        pipeline.publish(before)
        pipeline.await_applied()
        for proc in pipeline.workers:
            assert proc.stop() == 0
        pipeline.workers.clear()
        client = pipeline.redis
        assert isinstance(client, redis.RedisCluster)
        keys = settings.keys
        lost_master = owner(client, keys.fence(0))
        lost = [p for p in range(keys.partitions) if owner(client, keys.fence(p)) == lost_master]
        for p in lost:
            for key in list(client.scan_iter(match=f"{keys.fence(p)[:-len('fence')]}*", count=1000)):
                client.delete(key)
        done = subprocess.run([sys.executable, "-m", "msgstate.workers", "rebuild"], cwd=ROOT,
                              env=worker_env(settings), capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        written = sorted(set(lost) & set(pipeline.last_offsets))  # partitions with records
        assert f"restored {len(written)} partition(s)" in done.stdout
        assert pipeline.applied() == pipeline.last_offsets
        pipeline.start_worker()
        pipeline.publish(after)
        pipeline.await_applied()
        assert_same_as_replay(pipeline, Expected(before + after, tmp_path))
    finally:
        pipeline.close()
