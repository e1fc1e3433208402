"""`msgstate tail` follows changes and rejections; `--message` keeps one message's."""

from __future__ import annotations

import subprocess
import sys

import orjson
from kafka import KafkaProducer

from msgstate.workers.config import Settings
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from .test_analytics import change

A, B = "layer:///messages/a", "layer:///messages/b"
REJECTION = {"response_id": "r9", "message_id": A, "identity_id": "u/r9", "reason": "fww_conflict",
             "detail": 'poll_choice already holds "b" for this identity', "change_index": 0,
             "change": {"operation": "add", "type": "FWW", "name": "poll_choice", "value": "c"},
             "raw": None, "partition": 0, "offset": 7}
MALFORMED = {"response_id": None, "message_id": None, "identity_id": None, "reason": "malformed",
             "detail": "not JSON", "change_index": None, "change": None, "raw": "eA==", "partition": 1,
             "offset": 3}


def publish(settings: Settings) -> None:
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    t = settings.topics
    for topic, key, record in [
        (t.summary_changes, A, change(A, "r1", "reactions", None, ["👍"])),
        (t.summary_changes, B, change(B, "r2", "reactions", None, ["🎉"])),
        (t.rejections, None, MALFORMED),
        (t.rejections, A, REJECTION),
        (t.summary_changes, A, change(A, "r3", "poll_choice", None, "b", "FWW")),
    ]:
        producer.send(topic, key=key.encode() if key else None, value=orjson.dumps(record))
    producer.send(t.summary_changes, key=b"junk", value=b"not json")
    producer.flush(timeout=30)
    producer.close()


def run_tail(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgstate.workers", "tail", "--from-beginning", *args],
                          env={**worker_env(settings), "COLUMNS": "200"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_tail_follows_one_message_changes_and_rejections(settings: Settings) -> None:
    publish(settings)
    done = run_tail(settings, "--message", A, "--json", "--count", "3")
    assert done.returncode == 0, done.stderr
    seen = [orjson.loads(line) for line in done.stdout.splitlines()]
    # Two topics interleave in any order; per topic, order holds.
    changes = [s["event_id"] for s in seen if s["kind"] == "change"]
    assert changes == [f"{A}/r1/reactions", f"{A}/r3/poll_choice"]
    assert [s for s in seen if s["kind"] == "reject"] == [{"kind": "reject", **REJECTION}]


def test_tail_prints_readable_lines(settings: Settings) -> None:
    publish(settings)
    done = run_tail(settings, "--count", "5")  # every record but the one that is not JSON
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5
    assert f'change  {A} root  u/r1  reactions null → ["👍"]  v1' in lines
    assert f"reject  {A}  u/r9  fww_conflict change 0: {REJECTION['detail']}" in lines
    assert "reject  -  -  malformed: not JSON" in lines


def test_tail_names_an_unreachable_kafka(settings: Settings) -> None:
    done = run_tail(settings.with_(kafka="127.0.0.1:1"))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("msgstate: ")
    assert "Kafka" in done.stderr and "127.0.0.1:1" in done.stderr


def test_http_and_analytics_name_an_unreachable_service(settings: Settings) -> None:
    for command, broken in (("http", settings.with_(redis="redis://127.0.0.1:1/0")),
                            ("analytics", settings.with_(kafka="127.0.0.1:1"))):
        done = subprocess.run([sys.executable, "-m", "msgstate.workers", command],
                              env=worker_env(broken), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1, command
        assert done.stderr.strip().startswith("msgstate: "), done.stderr
        assert "127.0.0.1:1" in done.stderr, command


def test_tail_drops_repeated_changes_and_rejections(settings: Settings) -> None:
    """A worker that takes a partition over produces again what the last holder left unacknowledged:
    tail prints each event id and each (partition, offset, change_index) once."""
    publish(settings)
    later = {**REJECTION, "offset": 8, "detail": "another"}
    producer = KafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    t = settings.topics
    for topic, key, record in [
        (t.summary_changes, A, change(A, "r1", "reactions", None, ["👍"])),  # repeats
        (t.rejections, A, REJECTION),
        (t.summary_changes, A, change(A, "r4", "reactions", ["👍"], [])),  # new, after them
        (t.rejections, A, later),
    ]:
        producer.send(topic, key=key.encode(), value=orjson.dumps(record))
    producer.flush(timeout=30)
    producer.close()
    # Seven distinct records of nine: reaching the last of A's partition of each topic means
    # passing its repeat.
    done = run_tail(settings, "--json", "--count", "7")
    assert done.returncode == 0, done.stderr
    seen = [orjson.loads(line) for line in done.stdout.splitlines()]
    changes = [s["event_id"] for s in seen if s["kind"] == "change"]
    assert sorted(changes) == [f"{A}/r1/reactions", f"{A}/r3/poll_choice", f"{A}/r4/reactions",
                               f"{B}/r2/reactions"]
    assert sorted((s["partition"], s["offset"]) for s in seen if s["kind"] == "reject") == [
        (0, 7), (0, 8), (1, 3)]
