"""`msgstate repartition`: from 12 to 24 partitions mid-workload, on the real stack (and on the
Redis Cluster, in test_redis_cluster.py); the summaries, events and rejections of the whole
workload then equal replay."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson
from kafka import KafkaAdminClient

from msgstate.streams.storage.layout import Keys, split_index_field, state_ref
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload
from .test_rebuild import rebuild


def repartition(settings: Settings, partitions: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgstate.workers", "repartition", "--partitions",
                           str(partitions)], env=worker_env(settings), cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def relocated(key: str, old: Keys, new: Keys) -> str:
    """Where a key of the `old` layout belongs in the `new` one."""
    partition = next(p for p in range(old.partitions) if key.startswith(old.head(p)))
    rest = key[len(old.head(partition)):]
    ref = state_ref(rest)
    return new.state(ref) if ref else new.head(partition) + rest


def misplaced(found: Iterable[str], keys: Keys) -> list[str]:
    """The keys of `found` that are not where the layout of `keys` puts them."""
    wrong = []
    for key in found:
        partition = next(p for p in range(keys.partitions) if key.startswith(keys.head(p)))
        rest = key[len(keys.head(partition)):]
        ref = state_ref(rest)
        if (keys.state(ref) if ref else keys.head(partition) + rest) != key or \
                (ref is None and rest not in ("fence", "outbox")):
            wrong.append(key)
    return wrong


def test_repartition_from_12_to_24_mid_workload_equals_replay(settings: Settings, tmp_path: Path) -> None:
    check_repartition(settings, tmp_path, 3000)


ERASE_1 = orjson.dumps({"kind": "erase_identity", "id": "e-1", "identity_id": "layer:///identities/user3"})
ERASE_2 = orjson.dumps({"kind": "erase_identity", "id": "e-2", "identity_id": "layer:///identities/user4"})


def _partition_wide(key: str) -> bool:
    """An identity's index or the erasure ids: a partition's own, not one message's."""
    return ":idx:" in key or key.endswith(":erasures")


def check_repartition(settings: Settings, tmp_path: Path, count: int, *, by_hand: bool = False) -> None:
    """Half the workload on 12 partitions, `msgstate repartition --partitions 24` (refused while
    workers run, and while they lag), the rest on 24: the whole equals replay, and so does Redis
    rebuilt from the state changelog alone. `by_hand`: the
    partitions are first added with Kafka's admin API under a running worker, which stops."""
    twelve = settings.with_(partitions=12)
    records = workload(count, seed=24)
    half = count // 2
    first, late, second = records[:half], records[half:half + 20], records[half + 20:]
    before = Pipeline(twelve)
    try:
        before.start_worker()
        before.start_worker()
        before.publish(first)
        before.publish([ERASE_1], everywhere=True)
        before.await_applied()
        running = repartition(twelve, 24)
        assert running.returncode == 1, running.stdout
        assert "state worker(s) of group" in running.stderr and "stop them" in running.stderr
        for worker in before.workers:
            assert worker.stop() == 0, worker.output()
        before.publish(late)
        lagging = repartition(twelve, 24)
        assert lagging.returncode == 1 and "applied up to" in lagging.stderr, lagging.stderr
        caught_up = before.start_worker()
        before.await_applied()
        if by_hand:
            admin = KafkaAdminClient(bootstrap_servers=twelve.kafka)
            try:
                admin.create_partitions({twelve.topics.responses: 24})
            finally:
                admin.close()
            wait_for(caught_up.alive, lambda alive: not alive, timeout=120,
                     what="the worker to stop when given partitions beyond its count")
            assert caught_up.proc.returncode == 1
            assert "MSGSTATE_PARTITIONS is 12: stop every worker, run msgstate repartition" in \
                caught_up.output()
        else:
            assert caught_up.stop() == 0, caught_up.output()
        ours = f"{twelve.key_prefix}:*"  # other tests' keys may share the server
        keys_before = {k.decode() for k in before.redis.scan_iter(match=ours, count=1000)
                       if not _partition_wide(k.decode())}

        done = repartition(twelve, 24)
        assert done.returncode == 0, done.stderr
        added = "already had 24 partitions" if by_hand else "added 12 partitions"
        assert added in done.stdout and "MSGSTATE_PARTITIONS=24" in done.stdout
        twenty_four = twelve.with_(partitions=24).keys
        every_key = {k.decode() for k in before.redis.scan_iter(match=ours, count=1000)}
        keys_after = {k for k in every_key if not _partition_wide(k)}
        assert keys_after == {relocated(k, twelve.keys, twenty_four) for k in keys_before}
        # Each index entry is under its message's new partition; every new partition knows the
        # erasure taken.
        indexes = [k for k in every_key if ":idx:" in k]
        assert indexes
        for key in indexes:
            for field in before.redis.hkeys(key):
                message_id, _, _ = split_index_field(field)
                assert key.startswith(twenty_four.head(twenty_four.partition_of(message_id)))
        assert all(before.redis.hget(twenty_four.erasures(p), "e-1") for p in range(24))
        assert misplaced(keys_after, twenty_four) == []
        again = repartition(twelve, 24)
        assert again.returncode == 0 and "already had 24 partitions; moved 0 keys" in again.stdout
        stale = before.start_worker()
        stale.proc.wait(timeout=120)
        assert stale.proc.returncode == 1 and "MSGSTATE_PARTITIONS is 12" in stale.output()
    finally:
        before.close()

    after = Pipeline(twelve.with_(partitions=24))
    try:
        after.start_worker()
        after.start_worker()
        after.publish(second)
        # A new erasure, and the first one sent again (taken already: skipped everywhere).
        after.publish([ERASE_2, ERASE_1], everywhere=True)
        assert max(after.last_offsets) >= 12, "records go to the new partitions too"
        after.await_applied()
        expected = Expected([*first, ERASE_1, *late, *second, ERASE_2, ERASE_1], tmp_path)
        assert sum(e["cause"] == "erase_identity" for e in expected.events) > 2
        assert_same_as_replay(after, expected)
        # The changelog followed the move: Redis rebuilt from it alone ends the same.
        for worker in after.workers:
            assert worker.stop() == 0, worker.output()
        for key in after.redis.scan_iter(match=f"{twelve.key_prefix}:*", count=1000):
            after.redis.delete(key)
        rebuilt = rebuild(after.settings)
        assert rebuilt.returncode == 0, rebuilt.stderr
        reader = SummaryReader(after.redis, after.settings.keys)
        for want in expected.summaries:
            assert reader.get_summary(want["message_id"], want["part_id"]) == want
    finally:
        after.close()
