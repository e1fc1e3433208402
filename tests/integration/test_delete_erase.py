"""`msgstate delete` and `msgstate erase`, and the SDK's delete_message / erase_identity, on the
real stack: the records land where SPEC section 3a wants them, signed when a key is set, and a
worker's events of them reach a watching model with their cause."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import orjson
import pytest

from msgstate.schemas.exceptions import DeliveryError
from msgstate.streams.engine.signing import Keyring, verify
from msgstate.streams.sdk import CHANGE, ChangeEvent, Client, Publisher
from msgstate.workers.config import Settings
from msgstate.workers.tools.stack import free_port_pair
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .test_sdk import PollModel, client_for, records_of

pytestmark = pytest.mark.integration


def msgstate(settings: Settings, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgstate.workers", *args],
                          env={**worker_env(settings), **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=90, check=False)


def test_the_deletion_lands_in_its_message_partition_and_the_erasure_once_in_every_one(
        settings: Settings) -> None:
    ensure_topics(settings, [settings.topics.responses])
    secret = os.urandom(32)
    signing = {"MSGSTATE_SIGNING_KEY": f"k1:{base64.b64encode(secret).decode()}"}
    with Publisher(settings.kafka, settings.topics.responses) as publisher:
        home = publisher.send_raw(b"layer:///messages/7", b"{}").result(timeout=60).partition

    deleted = msgstate(settings, "delete", "layer:///messages/7", "--by", "mod",
                       "--status-text", "spam", env=signing)
    assert deleted.returncode == 0, deleted.stderr
    erased = msgstate(settings, "erase", "frodo", env=signing)
    assert erased.returncode == 0, erased.stderr

    records = records_of(settings, settings.topics.responses, 1 + 1 + settings.partitions)
    deletions = [r for r in records if r.value != b"{}" and orjson.loads(r.value)["kind"] ==
                 "delete_message"]
    erasures = [r for r in records if r.value != b"{}" and orjson.loads(r.value)["kind"] ==
                "erase_identity"]
    [deletion] = deletions
    record = orjson.loads(deletion.value)
    assert (deletion.key, deletion.partition) == (b"layer:///messages/7", home)
    assert (record["message_id"], record["identity_id"], record["status_text"]) == (
        "layer:///messages/7", "mod", "spam")
    assert record["id"].startswith("d-")
    assert deleted.stdout.splitlines() == [
        f"published delete_message {record['id']} for layer:///messages/7 to "
        f"{settings.topics.responses} partition {home} offset {deletion.offset}"]

    assert sorted(r.partition for r in erasures) == list(range(settings.partitions))
    assert {r.value for r in erasures} == {erasures[0].value} and {r.key for r in erasures} == {b""}
    erasure = orjson.loads(erasures[0].value)
    assert erasure["identity_id"] == "frodo" and erasure["id"].startswith("e-")
    assert erased.stdout.splitlines() == [
        f"published erase_identity {erasure['id']} for frodo to {settings.topics.responses} "
        f"partitions 0-{settings.partitions - 1} ({settings.partitions} records)"]
    ring = Keyring({"k1": secret})
    assert all(verify(r.headers, r.key, r.value, ring) for r in [deletion, *erasures])


def test_bad_input_and_an_unreachable_kafka_are_one_line_errors(settings: Settings) -> None:
    empty = msgstate(settings, "erase", "")
    assert empty.returncode == 1 and len(empty.stderr.splitlines()) == 1
    assert '"identity_id" has 0 characters' in empty.stderr
    dead = f"127.0.0.1:{free_port_pair()}"
    unreachable = msgstate(settings, "delete", "m", env={"MSGSTATE_KAFKA": dead})
    assert unreachable.returncode == 1, unreachable.stderr
    [line] = unreachable.stderr.splitlines()
    assert line.startswith(f"msgstate: Kafka is unreachable at {dead}")


def change_event(name: str, identity: str, old: object, version: int, cause: str, rid: str
                 ) -> dict[str, object]:
    """A summary-change event of a deletion or an erasure, as a worker writes it (SPEC 3a)."""
    return {"event_id": f"msg-9/{rid}/root/{name}/{identity}", "message_id": "msg-9",
            "part_id": "root", "response_id": rid, "identity_id": identity, "name": name,
            "type": "Set", "old": old, "new": None, "version": version,
            "status_text": "gone", "cause": cause}


def test_the_sdk_publishes_both_records_and_its_listeners_hear_their_cause(
        settings: Settings) -> None:
    ensure_topics(settings, [settings.topics.responses, settings.topics.summary_changes])
    with client_for(settings) as client:
        sam = client.model(PollModel, "msg-9", "sam")
        sam.responses.load({"message_id": "msg-9", "part_id": "root", "version": 1, "states": {
            "colors": {"type": "Set", "values": {"frodo": ["red"], "sam": ["red", "blue"]},
                       "tally": [{"value": "red", "count": 2}, {"value": "blue", "count": 1}]}}})
        heard: list[ChangeEvent] = []
        sam.on(CHANGE, heard.append)

        erasures = client.erase_identity("frodo", "Frodo left")
        deletion = client.delete_message("msg-9", "mod")
        partitions = sorted(f.result(timeout=60).partition for f in erasures)
        assert partitions == list(range(settings.partitions))
        home = deletion.result(timeout=60).partition

        events = [change_event("colors", "frodo", ["red"], 2, "erase_identity",
                               erasures[0].response_id or ""),
                  change_event("colors", "sam", ["red", "blue"], 3, "delete_message",
                               deletion.response_id or "")]
        with Publisher(settings.kafka, settings.topics.summary_changes) as events_out:
            for event in events:
                events_out.send_raw(b"msg-9", orjson.dumps(event)).result(timeout=60)
        wait_for(lambda: [(e.cause, e.identity_id) for e in heard], lambda seen: len(seen) == 2,
                 timeout=90, what="both events at sam's model")
    assert [(e.cause, e.identity_id, e.deleted, e.status_text) for e in heard] == [
        ("erase_identity", "frodo", False, "gone"), ("delete_message", "sam", True, "gone")]
    assert sam.color_tally == {}
    assert sam.responses.summary == {"message_id": "msg-9", "part_id": "root", "version": 3,
                                     "states": {}, "deleted": True}

    records = records_of(settings, settings.topics.responses, settings.partitions + 1)
    sent = [(r.partition, r.key, orjson.loads(r.value)["kind"]) for r in records]
    assert sorted(sent) == sorted([(p, b"", "erase_identity") for p in partitions]
                                  + [(home, b"msg-9", "delete_message")])


def test_an_erasure_with_kafka_unreachable_raises_naming_it(stack_settings: Settings) -> None:
    dead = f"127.0.0.1:{free_port_pair()}"
    with Client(dead, stack_settings.redis, connect_timeout=1.0) as client:
        queued = client.delete_message("m", "mod")  # waiting in the sender when the erasure asks
        with pytest.raises(DeliveryError, match=f"Kafka is unreachable at {dead}"):
            client.erase_identity("frodo")
        with pytest.raises(DeliveryError, match=f"Kafka is unreachable at {dead}"):
            queued.result(timeout=30)
