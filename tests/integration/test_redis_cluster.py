"""The pipeline on a real Redis Cluster (three masters, a replica each): every partition's keys
in one slot, the partitions spread evenly over the masters, the same end as replay, and nothing
lost when the master holding the busiest partition dies mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from msgstate.streams.sdk import CHANGE, ChangeEvent
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools import stack
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .http_helpers import running_http
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload
from .processes import WorkerProcess
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
