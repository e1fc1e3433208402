"""Each benchmark peer applies the same rules: it ends with the summaries `msgstate replay` prints.

The benchmark compares the worker with these peers; the comparison is honest only if they do
the same work. Nothing here is timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from msgstate.bench import kafka_io
from msgstate.bench.peers import naive, quix, table
from msgstate.workers.config import Settings

from ..waiting import wait_for
from .pipeline_harness import Expected, workload
from .processes import WorkerProcess

READERS = {"naive": naive.summaries, "table": table.summaries, "quix": quix.summaries}


def _key(summary: dict[str, Any]) -> tuple[str, str]:
    return summary["message_id"], summary["part_id"]


@pytest.mark.parametrize("peer", sorted(READERS))
def test_peer_ends_with_the_summaries_of_replay(peer: str, settings: Settings, tmp_path: Path) -> None:
    records = workload(300, seed=11)
    expected = Expected(records, tmp_path)
    kafka_io.create_topics(settings)
    process = WorkerProcess(settings, ["-m", "msgstate.bench.peers", peer], name=f"peer-{peer}")
    try:
        kafka_io.publish(settings, records)
        read = READERS[peer]

        def probe() -> list[dict[str, Any]]:
            process.check()
            try:
                return read(settings)
            except StopIteration:  # quix has not created its changelog topic yet
                return []

        got = wait_for(probe, lambda seen: seen == expected.summaries, timeout=120,
                       what=lambda: f"{peer}'s summaries to equal replay's\n{process.output()}")
        assert sorted(map(_key, got)) == sorted(map(_key, expected.summaries))
        want = sorted(e["event_id"] for e in expected.events)
        wait_for(lambda: sorted(kafka_io.events(settings)), lambda seen: seen == want, timeout=60,
                 what=f"{peer}'s events to be those of replay")
    finally:
        process.stop()
        kafka_io.delete_topics(settings, settings.topics.prefix, settings.app_id)
