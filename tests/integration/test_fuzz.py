"""Hostile input at volume through the real pipeline: rejected with reasons, nothing else hurt."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from msgstate.schemas.rejections import REASONS
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.fault_check import Record, json_values, read_topic, replay_topic
from msgstate.workers.tools.fault_run import run, workload
from msgstate.workers.tools.hostile import MAKERS, blend, hostile_records

from ..unit.strategies import lines

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
@hypothesis_settings(max_examples=1, deadline=None, phases=[Phase.generate],
                     suppress_health_check=list(HealthCheck))
# No deletions or erasures: they would change the valid messages this test compares.
@given(drawn=st.lists(st.one_of(st.binary(max_size=300), lines(with_removals=False)),
                     min_size=150, max_size=150))
def test_hostile_records_are_rejected_with_reasons_and_leave_valid_ones_alone(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory, drawn: list[bytes]) -> None:
    tag = f"z{uuid.uuid4().hex[:10]}"
    settings = settings.with_(topics=Topics(tag), key_prefix=tag, app_id=f"{tag}-app")
    valid = workload(1200, seed=3)
    hostile = hostile_records(20 * len(MAKERS), seed=3)
    values = blend(valid, hostile + drawn, seed=3)

    figures = run(settings, "fuzz", records=len(values), rate=1500, values=values,
                  logs=Path(tmp_path_factory.mktemp("fuzz")))

    assert figures.worker_crashes == 0
    assert figures.clean, figures.as_dict()
    # Every record of workers/hostile.py ends in the rejections topic with a known reason.
    where = {(r.partition, r.offset): r.value for r in read_topic(settings, settings.topics.responses)}
    rejected: dict[bytes, set[str]] = {}
    for rejection in json_values(read_topic(settings, settings.topics.rejections)):
        value = where[(rejection["partition"], rejection["offset"])]
        rejected.setdefault(value, set()).add(rejection["reason"])
    for record in hostile:
        assert rejected.get(record), f"no rejection for {record[:80]!r}"
        assert rejected[record] <= set(REASONS)
    # The valid records' messages end exactly as if the hostile records had never been sent.
    alone = replay_topic([Record(0, i, None, v) for i, v in enumerate(valid)])
    client = redis.Redis.from_url(settings.redis)
    try:
        reader = SummaryReader(client, settings.keys)
        for want in alone.summaries:
            assert reader.get_summary(want["message_id"], want["part_id"]) == want
    finally:
        client.close()
