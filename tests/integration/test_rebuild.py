"""Redis lost with its data, the responses topic trimmed to the workers' committed offsets:
`msgstate rebuild` restores the state from the changelog, and the workers go on from there with
the same summaries, events and rejections as a replay of the whole history."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition

from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.stack import private_stack, redis_service, start_service, stop_service

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload


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
    before, after = workload(1200, seed=21), workload(600, seed=22)
    # Sent again after the rebuild: duplicates only a restored dedupe memory knows.
    again = [r for r in before if r.startswith(b"{")][-40:]
    pipeline = Pipeline(settings)
    try:
        pipeline.start_worker()
        pipeline.publish(before)
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

        pipeline.start_worker()
        pipeline.publish(again + after)
        pipeline.await_applied()
        expected = Expected(before + again + after, tmp_path)
        assert sum(r["reason"] == "duplicate" for r in expected.rejections) >= len(again)
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()
