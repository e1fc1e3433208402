"""`msgstate demo` says what it runs and what came of it, from the records and what it read back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from rich.text import Text

from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.demo import (
    Seen,
    expected_outputs,
    key_of,
    next_steps,
    outcome_lines,
    sample_workload,
    stack_settings,
    workload_lines,
)


def plain(lines: list[str]) -> list[str]:
    return [Text.from_markup(line).plain for line in lines]


def test_each_bad_record_is_rejected_for_the_reason_the_demo_announces() -> None:
    workload = sample_workload()
    outcome = Engine().apply_batch([decode_response(r) for r in workload.records], MemoryStore())
    first_bad = len(workload.responses)
    by_record = {index - first_bad: r["reason"] for index, r in outcome.rejections if index >= first_bad}
    assert by_record == {n: bad.reason for n, bad in enumerate(workload.bad)}
    # The responses themselves are rejected only for a second vote in a poll.
    assert {r["reason"] for index, r in outcome.rejections if index < first_bad} == {"fww_conflict"}


def test_the_workload_is_described_from_its_records() -> None:
    workload = sample_workload()
    expected = expected_outputs(workload)
    text = "\n".join(plain(workload_lines(workload, "t.responses", expected)))
    assert f"{len(workload.records):,} records to t.responses" in text
    assert f"{len(workload.responses):,} responses from {len(workload.identities())} identities on " \
           f"{len(workload.messages())} messages" in text
    assert "4 states of 3 types: reactions (Set)" in text and "poll_choice (FWW)" in text
    assert f"{len(workload.bad)} records bad on purpose" in text
    for bad in workload.bad:
        assert f"    {bad.what}: {bad.reason}" in text
    assert f"expects {expected.events:,} summary changes and {expected.rejections:,} rejections" in text
    assert f"fww_conflict {expected.of_responses['fww_conflict']:,} among the responses" in text


def test_records_are_keyed_by_message_id_when_they_have_one() -> None:
    workload = sample_workload()
    assert key_of(workload.responses[0]) == orjson.loads(workload.responses[0])["message_id"].encode()
    assert [key_of(bad.value) is None for bad in workload.bad] == [True, True, False, False, False]


def rejection(partition: int, offset: int, reason: str, change_index: int | None) -> dict[str, Any]:
    return {"partition": partition, "offset": offset, "reason": reason, "change_index": change_index,
            "message_id": "m"}


def event(event_id: str, message_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "message_id": message_id}


def test_the_outcome_counts_what_was_read_back_once_each() -> None:
    seen = Seen()
    for e in (event("e1", "m1"), event("e2", "m1"), event("e3", "m2"), event("e1", "m1")):
        seen.add_event(e)
    for r in (rejection(0, 5, "malformed", None), rejection(1, 7, "fww_conflict", 0),
              rejection(1, 7, "fww_conflict", 0),  # published again after a worker restart
              rejection(1, 8, "fww_conflict", 0), rejection(1, 8, "type_mismatch", 1)):
        seen.add_rejection(r)
    assert plain(outcome_lines(10, seen)) == [
        "Outcome: what the workers did with the 10 records Kafka acknowledged",
        "  accepted   9 records, 2 of them with 3 changes rejected",
        "  rejected   1 record whole; 4 rejections in all, by reason: fww_conflict 2, malformed 1, "
        "type_mismatch 1",
        "  events     3 summary changes on 2 messages",
    ]
    assert plain(outcome_lines(1, Seen()))[1:] == [
        "  accepted   1 record",
        "  rejected   0 records whole; 0 rejections in all, by reason: none",
        "  events     0 summary changes on 0 messages",
    ]


def test_next_steps_name_the_run_s_prefixes_and_commands() -> None:
    base = Settings()
    run = base.with_(topics=Topics("msgstate.demo-7"), key_prefix="ms-demo-7")
    lines = plain(next_steps(base, run, "chat/messages/0000", Path("/s/demo-7-responses.jsonl"),
                             stopped=False))
    text = "\n".join(lines)
    assert "  export MSGSTATE_TOPIC_PREFIX=msgstate.demo-7 MSGSTATE_KEY_PREFIX=ms-demo-7" in lines
    assert "MSGSTATE_KAFKA" not in text and "stack up" not in text
    commands = Counter(line.split()[1] for line in lines if line.startswith("  msgstate "))
    assert commands == {"summary": 1, "tail": 1, "http": 1, "replay": 1}
    assert "msgstate summary chat/messages/0000 " in text
    assert "http://127.0.0.1:8080/live?message=chat/messages/0000" in text
    assert "msgstate replay /s/demo-7-responses.jsonl " in text

    elsewhere = base.with_(kafka="127.0.0.1:19092")
    lines = plain(next_steps(elsewhere, run.with_(kafka=elsewhere.kafka), "m", Path("f"), stopped=True))
    assert any("MSGSTATE_KAFKA=127.0.0.1:19092" in line for line in lines)
    assert lines[3].startswith("  msgstate stack up ")


def test_on_a_cluster_the_demo_runs_where_stack_up_would_and_says_how_to_get_back() -> None:
    base = Settings(kafka="127.0.0.1:19092", redis="redis://127.0.0.1:17000/0")
    assert stack_settings(base, 0, 0) == base
    cluster = stack_settings(base, 3, 3)
    assert cluster.redis_cluster and cluster.redis == base.redis
    assert cluster.kafka == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094" and cluster.replication == 3
    assert stack_settings(base, 3, 0) == base.with_(redis_cluster=True)
    run = cluster.with_(topics=Topics("msgstate.demo-8"), key_prefix="ms-demo-8")
    lines = plain(next_steps(cluster, run, "m", Path("f"), stopped=True))
    assert lines[1] == ("  export MSGSTATE_TOPIC_PREFIX=msgstate.demo-8 MSGSTATE_KEY_PREFIX=ms-demo-8 "
                        "MSGSTATE_KAFKA=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 "
                        "MSGSTATE_REDIS=redis://127.0.0.1:17000/0 MSGSTATE_REDIS_CLUSTER=true "
                        "MSGSTATE_REPLICATION=3")
    assert lines[3].startswith("  msgstate stack up --redis-cluster 3 --kafka-brokers 3 ")
