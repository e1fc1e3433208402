"""The client SDK against the real stack: a state worker in a subprocess applies what the SDK
publishes; the SDK reads the summary and hears the changes."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from msgstate.schemas.exceptions import DeliveryError, ServiceUnreachable, ValidationError
from msgstate.streams.engine.signing import Keyring, SigningKey, verify
from msgstate.streams.sdk import (
    CHANGE,
    CRDT_TYPES,
    AsyncClient,
    ChangeEvent,
    Client,
    MessageTypeModel,
    Publisher,
)
from msgstate.workers.config import Settings
from msgstate.workers.tools.stack import free_port_pair
from msgstate.workers.topics import ensure_topics

from ..conftest import ROOT, worker_env
from ..waiting import wait_for
from .processes import WorkerProcess


class PollModel(MessageTypeModel):
    def register_all_states(self) -> None:
        self.responses.register_state("poll_choice", CRDT_TYPES.FIRST_WRITER_WINS)
        self.responses.register_state("colors", CRDT_TYPES.SET)
        self.responses.register_state("answer", CRDT_TYPES.LAST_WRITER_WINS_NULLABLE)

    def parse_model_responses(self) -> None:
        summary = self.responses.summary or {}
        colors = summary.get("states", {}).get("colors", {})
        self.color_tally = {t["value"]: t["count"] for t in colors.get("tally", [])}


@pytest.fixture
def deployment(settings: Settings) -> Iterator[Settings]:
    """The test's topics and one state worker."""
    ensure_topics(settings)
    worker = WorkerProcess(settings, ["-m", "msgstate.workers", "worker", "-l", "warn"])
    try:
        yield settings
    finally:
        worker.stop()


def client_for(settings: Settings, **options: Any) -> Client:
    return Client(settings.kafka, settings.redis, topic_prefix=settings.topics.prefix,
                  key_prefix=settings.key_prefix, partitions=settings.partitions,
                  redis_cluster=settings.redis_cluster, **options)


def records_of(settings: Settings, topic: str, at_least: int) -> list[Any]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=300)
    seen: list[Any] = []
    try:
        def more() -> int:
            seen.extend(consumer)
            return len(seen)
        wait_for(more, lambda n: n >= at_least, timeout=60, what=f"{at_least} records on {topic}")
    finally:
        consumer.close()
    return seen


def test_publish_apply_read_and_hear_the_changes(deployment: Settings) -> None:
    settings = deployment
    with client_for(settings) as frodo_side, client_for(settings) as sam_side:
        frodo = frodo_side.model(PollModel, "msg-1", "frodo")
        sam = sam_side.model(PollModel, "msg-1", "sam")
        heard: list[ChangeEvent] = []
        sam.on(CHANGE, heard.append)

        frodo.responses.add_state("colors", "red")
        frodo.responses.add_state("colors", "green")
        frodo.responses.set_response_message_text("Frodo likes red and green")
        first = frodo.responses.add_state("poll_choice", "b")  # all three in one response, 100 ms on
        delivery = first.result(timeout=60)
        assert delivery.response_id == first.response_id and delivery.offset >= 0

        wait_for(lambda: [(e.name, e.identity_id, e.old_value, e.new_value) for e in heard],
                 lambda seen: len(seen) == 2, timeout=90, what="two change events at sam's model")
        assert [(e.name, e.identity_id, e.old_value, e.new_value) for e in heard] == [
            ("colors", "frodo", None, ["red", "green"]), ("poll_choice", "frodo", None, "b")]
        assert heard[0].has_property("colors") and heard[0].status_text == "Frodo likes red and green"
        assert heard[0].response_id == first.response_id and heard[0].version == 1
        assert sam.color_tally == {"red": 1, "green": 1}  # parse_model_responses ran on the change

        sam.responses.add_state("colors", "red")
        frodo.responses.remove_state("colors", "green")
        sam.responses.send_response_message()
        frodo.responses.send_response_message()
        frodo_side.flush()
        wait_for(lambda: sam.color_tally, lambda t: t == {"red": 2}, timeout=60,
                 what="sam's local tally after two more responses")
        assert frodo.responses.get_state("colors") == ["red"]
        assert sam.responses.get_state("poll_choice", "frodo") == "b"
        summary = sam_side.get_summary("msg-1", clip=1)
        assert summary["version"] == 3
        assert summary["states"]["colors"]["tally"] == [{"value": "red", "count": 2}]
        assert summary["states"]["colors"]["clipped"] is True
        assert summary["states"]["colors"]["identities"] == 2
        # The local view the events kept equals Redis.
        assert sam.responses.summary == sam_side.get_summary("msg-1")
        assert frodo_side.get_state("msg-1", "poll_choice", "sam") is None


def test_a_retry_reuses_the_response_id_and_the_worker_drops_the_copy(deployment: Settings) -> None:
    settings = deployment
    with client_for(settings) as client:
        model = client.model(PollModel, "msg-2", "frodo")
        first = model.responses.add_state("colors", "red")
        model.responses.send_response_message()
        first.result(timeout=60)
        again = first.retry()  # as after an ambiguous failure: same bytes, same id
        assert again.result(timeout=60).response_id == first.response_id
        rejections = [orjson.loads(r.value)
                      for r in records_of(settings, settings.topics.rejections, 1)]
        assert [(r["reason"], r["response_id"]) for r in rejections] == [
            ("duplicate", first.response_id)]
        summary = client.get_summary("msg-2")
        assert summary["version"] == 1
        assert summary["states"]["colors"]["values"] == {"frodo": ["red"]}


def test_a_delivery_error_surfaces_on_the_future() -> None:
    dead = f"127.0.0.1:{free_port_pair()}"
    publisher = Publisher(dead, "msgstate.responses", connect_timeout=1.0)
    try:
        started = time.monotonic()
        futures = [publisher.send_raw(b"m", b"{}") for _ in range(3)]
        for future in futures:
            with pytest.raises(DeliveryError, match=f"Kafka is unreachable at {dead}"):
                future.result(timeout=30)
        assert time.monotonic() - started < 20
    finally:
        publisher.close()


def test_a_record_kafka_refuses_fails_its_future_not_the_publisher(settings: Settings) -> None:
    ensure_topics(settings, [settings.topics.responses])
    with Publisher(settings.kafka, settings.topics.responses) as publisher:
        too_big = publisher.send_raw(b"m", b"x" * 2_000_000)  # over the producer's max request size
        fine = publisher.send_raw(b"m", b"{}")
        with pytest.raises(DeliveryError, match="MessageSizeTooLarge"):
            too_big.result(timeout=30)
        assert fine.result(timeout=30).offset >= 0


def test_the_async_client_publishes_reads_and_listens_on_the_loop(deployment: Settings) -> None:
    settings = deployment

    async def scenario() -> None:
        threads: list[int] = []
        async with AsyncClient(settings.kafka, settings.redis, partitions=settings.partitions,
                               topic_prefix=settings.topics.prefix,
                               key_prefix=settings.key_prefix) as client:
            model = await client.model(PollModel, "msg-3", "frodo")
            changed = asyncio.Event()

            def on_change(event: ChangeEvent) -> None:
                threads.append(threading.get_ident())
                changed.set()

            model.on(CHANGE, on_change)
            delivery = await model.responses.add_state("answer", 42)
            assert delivery.offset >= 0
            await asyncio.wait_for(changed.wait(), timeout=90)
            assert await client.get_state("msg-3", "answer", "frodo") == 42
            summary = await client.get_summary("msg-3")
            assert summary["states"]["answer"]["tally"] == [{"value": 42, "count": 1}]
            model.responses.remove_state("answer")
        # Listeners ran on the loop's thread.
        assert threads and set(threads) == {threading.get_ident()}

    asyncio.run(scenario())
    with client_for(settings) as client:
        wait_for(lambda: client.get_state("msg-3", "answer", "frodo"), lambda v: v is None,
                 timeout=60, what="the remove sent on close to be applied")


def test_msgstate_publish_signs_when_a_key_is_set(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings, [settings.topics.responses])
    secret = os.urandom(32)
    lines = [b'{"id": "r1", "message_id": "m1", "identity_id": "u", "changes": []}', b"not json"]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    env = worker_env(settings)
    env["MSGSTATE_SIGNING_KEY"] = f"k1:{base64.b64encode(secret).decode()}"
    done = subprocess.run([sys.executable, "-m", "msgstate.workers", "publish", str(source)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "published 2 records" in done.stderr
    # Two partitions (one record has no key): their order is not defined across them.
    records = sorted(records_of(settings, settings.topics.responses, 2), key=lambda r: r.key or b"")
    assert [(r.key, r.value) for r in records] == [(None, lines[1]), (b"m1", lines[0])]
    ring = Keyring({"k1": secret})
    assert all(verify(r.headers, r.key, r.value, ring) for r in records)
    assert not verify(records[1].headers, records[1].key, lines[1], ring)

    env["MSGSTATE_SIGNING_KEY"] = "k1:not base64!"
    bad = subprocess.run([sys.executable, "-m", "msgstate.workers", "publish", str(source)], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "not base64" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_a_signing_client_signs_every_response_and_bad_records_never_leave(settings: Settings) -> None:
    ensure_topics(settings, [settings.topics.responses])
    key = SigningKey("2026-02", os.urandom(32))
    with client_for(settings, signing_key=key) as client:
        model = client.model(PollModel, "msg-4", "frodo", watch=False)
        model.responses.add_state("colors", "red")
        sent = model.responses.send_response_message()
        assert sent is not None
        direct = client.publish({"message_id": "msg-4", "identity_id": "sam",
                                 "changes": [{"operation": "add", "type": "Set", "name": "colors",
                                              "value": "blue"}]})
        with pytest.raises(ValidationError, match="invalid"):
            client.publish({"message_id": "msg-4", "identity_id": "sam", "changes": []})
        direct.result(timeout=60)
        sent.result(timeout=60)
    records = records_of(settings, settings.topics.responses, 2)
    assert [orjson.loads(r.value)["id"] for r in records] == [sent.response_id, direct.response_id]
    rotation = Keyring({"2026-01": os.urandom(32), "2026-02": key.secret})
    assert all(verify(r.headers, r.key, r.value, rotation) for r in records)
    assert not any(verify(r.headers, r.key, r.value, Keyring({"2026-02": os.urandom(32)}))
                   for r in records)


def test_unreachable_services_are_named_with_their_address(stack_settings: Settings) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port_pair()}/0"
    dead_kafka = f"127.0.0.1:{free_port_pair()}"
    with Client(stack_settings.kafka, dead_redis, connect_timeout=1.0) as client:
        with pytest.raises(ServiceUnreachable, match=f"Redis is unreachable at {dead_redis}"):
            client.get_summary("m")
        with pytest.raises(ServiceUnreachable, match="Redis is unreachable"):
            client.model(PollModel, "m", "u", watch=False)
    started = time.monotonic()
    with Client(dead_kafka, stack_settings.redis, connect_timeout=1.0) as client:
        with pytest.raises(ServiceUnreachable, match=f"Kafka is unreachable at {dead_kafka}"):
            client.model(PollModel, "m", "u")
        assert client.get_summary("m")["version"] == 0  # reads need only Redis
    assert time.monotonic() - started < 30
