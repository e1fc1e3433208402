"""The pipeline on the real stack ends equal to `msgstate replay` of the same records."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from msgstate.workers.config import Settings
from msgstate.workers.tools import stack

from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload


@pytest.mark.parametrize(("workers", "engine"), [(1, "native"), (2, "native"), (1, "python")])
def test_pipeline_equals_replay(settings: Settings, tmp_path: Path, workers: int, engine: str) -> None:
    records = workload(1500, seed=workers)
    expected = Expected(records, tmp_path)
    assert expected.rejections and expected.events, "the workload must exercise both outputs"
    pipeline = Pipeline(settings)
    try:
        for _ in range(workers):
            pipeline.start_worker(engine=engine)
        pipeline.publish(records)
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def test_sigkill_mid_stream_then_restart_loses_nothing_and_applies_nothing_twice(
    settings: Settings, tmp_path: Path
) -> None:
    records = workload(3000, seed=11)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    try:
        victim = pipeline.start_worker()
        pipeline.publish(records[:2000])
        # Kill once it is part-way through: some offsets applied, not all.
        wait_for(lambda: sum(o + 1 for o in pipeline.applied().values() if o >= 0),
                 lambda n: n > 200, timeout=120, what=lambda: "some records applied\n" + victim.output())
        victim.kill()
        # A batch's outputs leave the outbox only with a later write: the kill left some there,
        # and the next holder must produce them.
        assert any(pipeline.outbox_lengths().values())
        pipeline.publish(records[2000:])
        pipeline.start_worker()
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def test_partitions_move_between_workers_and_order_per_message_holds(
    settings: Settings, tmp_path: Path
) -> None:
    records = workload(3000, seed=23)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    try:
        first = pipeline.start_worker()
        pipeline.publish(records[:1000])
        pipeline.start_worker()  # scale out: partitions move to the newcomer
        pipeline.publish(records[1000:2000])
        first.stop()  # scale in: its partitions move back
        pipeline.publish(records[2000:])
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def test_sigterm_finishes_the_batch_in_hand_commits_and_exits_in_time(
    settings: Settings, tmp_path: Path
) -> None:
    records = workload(3000, seed=13)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    try:
        worker = pipeline.start_worker()
        pipeline.publish(records)
        wait_for(lambda: sum(o + 1 for o in pipeline.applied().values() if o >= 0),
                 lambda n: n > 200, timeout=120, what=lambda: "some records applied\n" + worker.output())
        started = time.monotonic()
        code = worker.stop(timeout=settings.shutdown_seconds + 10)
        took = time.monotonic() - started
        assert code == 0, worker.output()
        assert took < settings.shutdown_seconds, f"stopping took {took:.1f} s"
        # What Redis applied is what the group committed, and every output left the outboxes.
        applied = {p: o for p, o in pipeline.applied().items() if o >= 0}
        committed = pipeline.committed()
        assert {p: committed.get(p) for p in applied} == {p: o + 1 for p, o in applied.items()}
        assert set(pipeline.outbox_lengths().values()) == {0}
        pipeline.start_worker()
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        pipeline.close()


def test_metrics_health_and_readiness_endpoints(settings: Settings, tmp_path: Path) -> None:
    records = workload(800, seed=17)
    expected = Expected(records, tmp_path)
    port = stack.free_port_pair()
    base = f"http://127.0.0.1:{port}"
    pipeline = Pipeline(settings)
    try:
        worker = pipeline.start_worker("--metrics-port", str(port))
        wait_for(lambda: _status(base + "/readyz"), lambda s: s == 200, timeout=120,
                 what=lambda: "readiness\n" + worker.output())
        assert _status(base + "/healthz") == 200
        pipeline.publish(records)
        pipeline.await_applied()
        # Counters move once a batch is done; lag is reported about once a second.
        seen = wait_for(lambda: _scrape(base), lambda m: m["lag"] == 0.0 and
                        m["records"] == len(records), timeout=60, what="metrics to settle")
        assert seen["events"] == len(expected.events)
        assert seen["rejections"] == Counter(r["reason"] for r in expected.rejections)
        assert seen["assigned"] == settings.partitions
        assert seen["rebalances"] >= 1
        assert seen["batches"] >= 1
        assert seen["persist_steps"] >= 1 and seen["produce_steps"] >= 1
    finally:
        pipeline.close()
    # Logs are JSON lines with their context as fields.
    lines = [orjson.loads(line) for line in worker.output(tail=200_000).splitlines()]
    assert {"message": "partitions assigned", "partitions": list(range(settings.partitions))}.items() \
        <= next(line for line in lines if line["message"] == "partitions assigned").items()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _scrape(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    return {
        "records": total("msgstate_worker_records_total"),
        "events": total("msgstate_worker_events_total"),
        "rejections": Counter({s.labels["reason"]: int(s.value) for s in samples
                               if s.name == "msgstate_worker_rejections_total"}),
        "lag": total("msgstate_worker_consumer_lag") if any(
            s.name == "msgstate_worker_consumer_lag" for s in samples) else None,
        "assigned": total("msgstate_worker_assigned_partitions"),
        "rebalances": total("msgstate_worker_rebalances_total"),
        "batches": total("msgstate_worker_batch_size_count"),
        "persist_steps": total("msgstate_worker_redis_seconds_count", step="persist"),
        "produce_steps": total("msgstate_worker_produce_seconds_count"),
    }


def test_a_frozen_worker_cannot_write_after_its_partitions_moved(settings: Settings, tmp_path: Path) -> None:
    records = workload(3000, seed=29)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    stale = pipeline.start_worker()
    try:
        pipeline.publish(records[:1000])
        pipeline.await_applied()
        # Frozen past its session timeout: the group gives its partitions to the other worker,
        # which takes new tokens. Woken up, the frozen one still holds the old ones.
        os.killpg(stale.proc.pid, signal.SIGSTOP)
        pipeline.start_worker()
        pipeline.publish(records[1000:2000])
        pipeline.await_applied(timeout=180)
        os.killpg(stale.proc.pid, signal.SIGCONT)
        pipeline.publish(records[2000:])
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stale.proc.pid, signal.SIGCONT)
        pipeline.close()


def test_redis_restored_from_an_older_copy_is_caught_up_from_its_fences(
    settings: Settings, tmp_path: Path
) -> None:
    """Redis comes back without its last writes (a lost second of AOF, a restored backup) while
    Kafka's committed offsets have passed them: the worker reads from each partition's fence,
    and the end is what replay gives."""
    records = workload(3000, seed=31)
    expected = Expected(records, tmp_path)
    pipeline = Pipeline(settings)
    client = pipeline.redis
    try:
        pipeline.publish(records[:1000])
        worker = pipeline.start_worker()
        pipeline.await_applied()
        assert worker.stop() == 0, worker.output()
        older = {key: client.dump(key) for key in client.scan_iter(match=f"{settings.key_prefix}:*")}
        older_fences = pipeline.applied()

        pipeline.publish(records[1000:2000])
        worker = pipeline.start_worker()
        pipeline.await_applied()
        assert worker.stop() == 0, worker.output()
        committed = pipeline.committed()
        assert all(committed[p] > o + 1 for p, o in older_fences.items()), "offsets passed the copy"

        for key in client.scan_iter(match=f"{settings.key_prefix}:*"):
            client.delete(key)
        for key, value in older.items():
            client.restore(key, 0, value)
        assert pipeline.applied() == older_fences

        pipeline.publish(records[2000:])
        worker = pipeline.start_worker()
        pipeline.await_applied()
        assert_same_as_replay(pipeline, expected)
        assert "reading them again" in worker.output(tail=1 << 20)
    finally:
        pipeline.close()
