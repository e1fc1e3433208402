"""The pipeline on the real stack ends equal to `msgstate replay` of the same records."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.config import Settings

from ..waiting import wait_for
from .pipeline_harness import Expected, Pipeline, assert_same_as_replay, workload


@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_equals_replay(settings: Settings, tmp_path: Path, workers: int) -> None:
    records = workload(1500, seed=workers)
    expected = Expected(records, tmp_path)
    assert expected.rejections and expected.events, "the workload must exercise both outputs"
    pipeline = Pipeline(settings)
    try:
        for _ in range(workers):
            pipeline.start_worker()
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
