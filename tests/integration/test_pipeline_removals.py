"""SPEC v1.1 on the real stack: deletions, erasures (sent to every partition), caps and values
of any JSON kind, while workers are killed and restarted, end equal to `msgstate replay` (and on
the Redis Cluster, in test_redis_cluster.py)."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson

from msgstate.schemas.records import Response, decode_response
from msgstate.workers.config import Settings
from msgstate.workers.tools.workload import responses

from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay

REGISTRY = {"reactions": {"type": "Set", "max_values": 4}, "latest_color": {"type": "LWW", "max_values": 3},
            "rating": "LWW"}


def _erasure(n: int, user: int) -> bytes:
    return orjson.dumps({"kind": "erase_identity", "id": f"e-{n}",
                         "identity_id": f"layer:///identities/user{user}", "status_text": "erased"})


def _deletion(n: int, message_id: str) -> bytes:
    return orjson.dumps({"kind": "delete_message", "id": f"d-{n}", "message_id": message_id,
                         "identity_id": "layer:///identities/mod"})


def test_deletions_and_erasures_with_workers_killed_end_equal_to_replay(
    settings: Settings, tmp_path: Path
) -> None:
    check_removals(settings, tmp_path)


def check_removals(settings: Settings, tmp_path: Path) -> None:
    """Two workers (one compiled, one Python), the compiled one killed twice mid-run."""
    records = list(responses(3000, messages=60, identities=20, bad_share=0.03, seed=41,
                             object_share=0.15))
    # The busiest messages are deleted: records keep coming for them afterwards.
    counts = Counter(item.message_id for item in map(decode_response, records[:1000])
                     if isinstance(item, Response))
    messages = [message for message, _ in counts.most_common(3)]
    # Segments published in turn; an erasure between them goes to every partition.
    segments = [records[:800], records[800:1600], records[1600:2400], records[2400:]]
    segments[0] += [_deletion(1, messages[0]), _deletion(2, messages[1])]
    segments[1] += [_deletion(1, messages[0]), _deletion(3, messages[2]), _deletion(4, "never-seen")]
    erasures = {0: [_erasure(1, 3)], 1: [_erasure(2, 7), _erasure(1, 3)], 2: [_erasure(3, 3)]}
    expected_input: list[bytes] = []
    for n, segment in enumerate(segments):
        expected_input += segment
        for erasure in erasures.get(n, []):
            expected_input += [erasure] * settings.partitions
    expected = Expected(expected_input, tmp_path, REGISTRY)
    assert any(s.get("deleted") for s in expected.summaries)
    assert {e["cause"] for e in expected.events} == {"response", "delete_message", "erase_identity"}
    reasons = {r["reason"] for r in expected.rejections}
    assert {"message_deleted", "duplicate", "limit_exceeded"} <= reasons

    pipeline = Pipeline(settings)
    env = {"MSGSTATE_REGISTRY": orjson.dumps(REGISTRY).decode()}
    try:
        victim = pipeline.start_worker(env=env)
        pipeline.start_worker(engine="python", env=env)
        for n, segment in enumerate(segments):
            pipeline.publish(segment)
            pipeline.publish(erasures.get(n, []), everywhere=True)
            if n == 1:
                wait_for(lambda: sum(o + 1 for o in pipeline.applied().values() if o >= 0),
                         lambda done: done > 900, timeout=120,
                         what="some records applied")
                assert victim.kill() == -signal.SIGKILL  # it was running, and died of it
                victim = pipeline.start_worker(env=env)
            if n == 2:
                assert victim.kill() == -signal.SIGKILL  # it was running, and died of it
                pipeline.start_worker(env=env)
        pipeline.await_applied(timeout=240)
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()
