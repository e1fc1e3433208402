"""Signing on: a worker with two active keys takes what either signed and rejects the rest."""

from __future__ import annotations

import base64

import orjson
import pytest
import redis

from msgstate.streams.engine.signing import SigningKey, sign
from msgstate.streams.sdk.publisher import record_key
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings

from .pipeline_harness import Pipeline
from .processes import WorkerProcess

pytestmark = pytest.mark.integration

OLD = SigningKey("2026-10", b"old-secret-of-32-bytes-.........")
NEW = SigningKey("2026-11", b"new-secret-of-32-bytes-.........")
GONE = SigningKey("2026-09", b"retired-secret-of-32-bytes-.....")


def spec(key: SigningKey) -> str:
    return f"{key.key_id}:{base64.b64encode(key.secret).decode()}"


def response(i: int, who: str) -> bytes:
    return orjson.dumps({"id": f"r{i}", "message_id": "m", "identity_id": who, "changes": [
        {"operation": "add", "type": "Set", "name": "reactions", "value": f"v{i}"}]})


def test_two_active_keys_are_accepted_and_missing_or_wrong_signatures_are_unauthenticated(
        settings: Settings) -> None:
    pipeline = Pipeline(settings)
    try:
        worker = WorkerProcess(settings, ["-m", "msgstate.workers", "worker", "-l", "warn"],
                               env={"MSGSTATE_SIGNING_KEYS": f"{spec(OLD)},{spec(NEW)}"})
        pipeline.workers.append(worker)
        tampered = response(3, "mallory")
        cases: list[tuple[bytes, list[tuple[str, bytes]]]] = [
            (response(1, "alice"), OLD.headers(b"m", response(1, "alice"))),   # old key, still active
            (response(2, "bob"), NEW.headers(b"m", response(2, "bob"))),       # new key
            (tampered, NEW.headers(b"m", response(4, "mallory"))),             # signature of another value
            (response(5, "eve"), []),                                          # not signed
            (response(6, "trudy"), GONE.headers(b"m", response(6, "trudy"))),  # retired key
            (response(7, "oscar"), sign(NEW.key_id, NEW.secret, b"other-key", response(7, "oscar"))),
        ]
        futures = [pipeline.producer.send(settings.topics.responses, key=record_key(value),
                                          value=value, headers=headers)
                   for value, headers in cases]
        pipeline.producer.flush(timeout=60)
        for future in futures:
            meta = future.get(timeout=60)
            pipeline.last_offsets[meta.partition] = max(pipeline.last_offsets.get(meta.partition, -1),
                                                        meta.offset)
        pipeline.await_applied()

        rejections = pipeline.outputs(settings.topics.rejections, 4)
        assert sorted((r["identity_id"], r["reason"]) for r in rejections) == [
            ("eve", "unauthenticated"), ("mallory", "unauthenticated"),
            ("oscar", "unauthenticated"), ("trudy", "unauthenticated")]
        client = redis.Redis.from_url(settings.redis)
        try:
            summary = SummaryReader(client, settings.keys).get_summary("m")
        finally:
            client.close()
        assert summary["states"]["reactions"]["values"] == {"alice": ["v1"], "bob": ["v2"]}
        assert summary["version"] == 2
    finally:
        pipeline.close()


def test_a_bad_keyring_is_a_one_line_error(settings: Settings) -> None:
    worker = WorkerProcess(settings, ["-m", "msgstate.workers", "worker"],
                           env={"MSGSTATE_SIGNING_KEYS": "k1:not base64!"})
    assert worker.proc.wait(timeout=60) == 1
    output = worker.output()
    worker.stop()
    assert "MSGSTATE_SIGNING_KEYS" in output and "Traceback" not in output
