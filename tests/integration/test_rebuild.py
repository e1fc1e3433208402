"""Redis lost with its data, the responses topic trimmed to the workers' committed offsets:
`msgstate rebuild` restores the state from the changelog, and the workers go on from there with
the same summaries, events and rejections as a replay of the whole history. SPEC v1.1's rules
survive it: a deleted message stays deleted, an erased identity's values stay gone and its
erasure is not taken twice, caps hold, and an erasure after the rebuild finds its identity's
values through the identity index the rebuild made again."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, TopicPartition

from msgstate.schemas.records import Response, decode_response
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.stack import private_stack, redis_service, start_service, stop_service

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, keys_holding, workload
from .test_pipeline_removals import REGISTRY


@pytest.fixture(scope="module")
def own_stack(stack_settings: Settings) -> Iterator[Settings]:
    """A stack of its own: this test kills its Redis."""
    with private_stack(stack_settings, partitions=4) as settings:
        yield settings


def rebuild(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgstate.workers", "rebuild"], cwd=ROOT,
                          env=worker_env(settings), capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.timeout(600)
def test_rebuild_after_redis_and_history_are_lost_ends_as_replay_of_everything(
        own_stack: Settings, tmp_path: Path) -> None:
    tag = f"r{uuid.uuid4().hex[:10]}"
    settings = own_stack.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")
    # One workload: the records after the loss go on in the messages before it.
    records = workload(1800, seed=21)
    before, after = records[:1200], records[1200:]
    busiest = Counter(r.message_id for r in map(decode_response, before[:600])
                      if isinstance(r, Response)).most_common(1)[0][0]
    # Before the loss: the busiest message deleted, user3 erased mid-way (and writing again
    # after it); after it: user3's erasure sent again, user7 erased last.
    deletion = orjson.dumps({"kind": "delete_message", "id": "d-1", "message_id": busiest,
                             "identity_id": "layer:///identities/mod"})
    erasure = orjson.dumps({"kind": "erase_identity", "id": "e-1",
                            "identity_id": "layer:///identities/user3"})
    erased = "layer:///identities/user7"
    second_erasure = orjson.dumps({"kind": "erase_identity", "id": "e-2", "identity_id": erased})
    # Sent again after the rebuild: duplicates only a restored dedupe memory knows.
    again = [r for r in before if r.startswith(b"{")][-40:]
    everywhere = settings.partitions
    expected = Expected([*before[:600], deletion, *[erasure] * everywhere, *before[600:], *again,
                         *[erasure] * everywhere, *after, *[second_erasure] * everywhere],
                        tmp_path, REGISTRY)
    ids_after = {r.id for r in map(decode_response, after) if isinstance(r, Response)}
    late = [r for r in expected.rejections if r["response_id"] in ids_after]
    assert any(r["reason"] == "message_deleted" and r["message_id"] == busiest for r in late)
    assert any(r["reason"] == "limit_exceeded" for r in late)
    assert sum(e["response_id"] == "e-1" for e in expected.events) > 0
    # user3 holds values when its erasure is sent again: taken twice, it would remove them.
    (tmp_path / "at-loss").mkdir()
    at_loss = Expected([*before[:600], deletion, *[erasure] * everywhere, *before[600:]],
                       tmp_path / "at-loss", REGISTRY)
    assert any("layer:///identities/user3" in state["values"] for s in at_loss.summaries
               for state in s["states"].values())
    erased_in = {e["message_id"] for e in expected.events if e["response_id"] == "e-2"}
    assert len(erased_in & {r.message_id for r in map(decode_response, before)
                            if isinstance(r, Response)}) >= 10
    pipeline = Pipeline(settings)
    env = {"MSGSTATE_REGISTRY": orjson.dumps(REGISTRY).decode()}
    try:
        pipeline.start_worker(env=env)
        pipeline.publish([*before[:600], deletion])
        pipeline.publish([erasure], everywhere=True)
        pipeline.publish(before[600:])
        pipeline.await_applied()
        ends = {p: o + 1 for p, o in pipeline.last_offsets.items()}
        wait_for(pipeline.committed, lambda c: all(c.get(p, -1) >= e for p, e in ends.items()),
                 timeout=60, what="the workers' commits")

        refused = rebuild(settings)
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "stop them" in refused.stderr
        for proc in pipeline.workers:
            assert proc.stop() == 0
        pipeline.workers.clear()
        assert not any(pipeline.outbox_lengths().values())  # everything is in Kafka

        # Redis dies and its data goes with it.
        stop_service(settings, "redis", kill=True)
        shutil.rmtree(redis_service(settings).home / "data")
        start_service(settings, "redis")
        pipeline.redis.close()
        pipeline.redis = settings.redis_client()
        assert pipeline.redis.dbsize() == 0

        # History goes too: the responses topic keeps nothing the workers committed.
        committed = pipeline.committed()
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
        try:
            admin.delete_records({TopicPartition(settings.topics.responses, p): offset
                                  for p, offset in committed.items()})
        finally:
            admin.close()

        done = rebuild(settings)
        assert done.returncode == 0, done.stderr
        assert f"restored {len(ends)} partition(s)" in done.stdout
        assert pipeline.applied() == {p: e - 1 for p, e in ends.items()}
        twice = rebuild(settings)
        assert twice.returncode == 0, twice.stderr
        assert "restored 0 partition(s)" in twice.stdout and "already current" in twice.stdout

        pipeline.start_worker(env=env)
        pipeline.publish(again)
        pipeline.publish([erasure], everywhere=True)
        pipeline.publish(after)
        pipeline.publish([second_erasure], everywhere=True)
        pipeline.await_applied()
        assert sum(r["reason"] == "duplicate" for r in expected.rejections) >= len(again)
        assert_same_as_replay(pipeline, expected)
        assert SummaryReader(pipeline.redis, settings.keys).get_summary(busiest)["deleted"]
        assert keys_holding(pipeline, erased) == []
        assert not any(pipeline.redis.exists(settings.keys.index(p, erased))
                       for p in range(settings.partitions))
    finally:
        pipeline.close()
