"""The apps host on the real stack: exact counting by parallel workers, dead letters, re-delivery."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
import redis

from msgstate.streams.apps.host import invalid_key
from msgstate.streams.apps.message_counter import COUNT
from msgstate.streams.storage.layout import AppKeys
from msgstate.workers.config import Settings

from ..conftest import ROOT, worker_env
from .apps_harness import AppsDeployment, chat_message

MESSAGES = 30_000
APPS = "msgstate.streams.apps.message_counter:MessageCounter,tests.integration.apps_fixtures:NaiveCounter"
TEST_APPS = ("msgstate.streams.apps.message_counter:MessageCounter,tests.integration.apps_fixtures:Flaky,"
             "tests.integration.apps_fixtures:StateWatcher")


# Two minutes on an idle 2-core machine; the margin is for a busy one.
@pytest.mark.timeout(480)
def test_three_workers_count_30000_messages_exactly_where_read_then_update_loses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSGSTATE_APPS", APPS)
    deployment = AppsDeployment(settings)
    try:
        for _ in range(3):
            deployment.start_worker()
        started = time.monotonic()
        deployment.publish_messages([chat_message(i, rooms=64) for i in range(MESSAGES)])
        published = time.monotonic()
        deployment.await_done(timeout=360)
        done = time.monotonic()
        [counter] = deployment.records("message-counter", COUNT)
        naive = max(r.data["count"] for r in deployment.records("naive-counter", COUNT))
        print(f"\n{MESSAGES} messages: published in {published - started:.1f} s, all handled by 3 apps "
              f"workers {done - started:.1f} s after the first send; message-counter "
              f"{counter.data['count']}, naive read-then-update {naive} (lost {MESSAGES - naive})")
        assert counter.data == {"count": MESSAGES}
        assert naive < MESSAGES, "concurrent read-then-update should have lost updates"
    finally:
        deployment.close()


def test_failing_handler_is_dead_lettered_and_redelivery_counts_nothing_twice(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSGSTATE_APPS", TEST_APPS)
    deployment = AppsDeployment(settings)
    store = redis.Redis.from_url(settings.redis)
    try:
        deployment.start_worker()
        messages = [chat_message(i, rooms=5, text="boom" if i % 8 == 3 else None) for i in range(40)]
        booms = [m for m in messages if m["text"] == "boom"]
        # The backend re-sent one message (same id): it counts once.
        deployment.publish_messages([*messages, messages[0]])
        deployment.publish(settings.topics.messages, [(b"room-0", b'{"id": "c-bad", "text": 5}')])
        changes = [{"event_id": f"m1/r{i}/color", "message_id": "m1", "name": "color",
                    "new": ["red", "blue"][i % 2] if i < 5 else None} for i in range(6)]
        deployment.publish(settings.topics.summary_changes, [(b"m1", orjson.dumps(c)) for c in changes])
        deployment.await_done()

        assert [r.data for r in deployment.records("message-counter", COUNT)] == [{"count": 40}]
        assert [r.data for r in deployment.records("flaky", COUNT)] == [{"count": 40 - len(booms)}]
        dead = store.xrange(AppKeys(settings.key_prefix, "flaky").dead)
        assert len(dead) == len(booms)
        # Rooms run side by side, so failures of different rooms may be recorded in any order.
        by_event = {fields[b"event_id"].decode(): fields for _, fields in dead}
        assert sorted(by_event) == sorted(m["id"] for m in booms)
        for message in booms:
            fields = by_event[message["id"]]
            assert fields[b"app"] == b"flaky"
            assert fields[b"handler"] == b"execute_post_message_sent"
            assert fields[b"error"] == f"ValueError: boom in {message['id']}".encode()
            assert orjson.loads(fields[b"event"]) == message
            assert b"raise ValueError" in fields[b"traceback"]
        [(_, invalid)] = store.xrange(invalid_key(settings.key_prefix))
        assert invalid[b"event"] == b'{"id": "c-bad", "text": 5}' and b"room_id" in invalid[b"error"]
        watched = {("message:m1", "misc:changes"): {"changes": 6},
                   ("message:m1", "misc:color=red"): {"votes": 3},
                   ("message:m1", "misc:color=blue"): {"votes": 2}}
        assert by_associations(deployment, "state-watcher") == watched

        # A second group reads every event again: to the apps, all of it is a re-delivery.
        deployment.start_worker(app_id=f"{settings.app_id}-again")
        deployment.await_done(app_id=f"{settings.app_id}-again")
        assert [r.data for r in deployment.records("message-counter", COUNT)] == [{"count": 40}]
        assert [r.data for r in deployment.records("flaky", COUNT)] == [{"count": 40 - len(booms)}]
        assert by_associations(deployment, "state-watcher") == watched
        # The failures were recorded once, not again on re-delivery.
        assert store.xrange(AppKeys(settings.key_prefix, "flaky").dead) == dead

        shown = subprocess.run(
            [sys.executable, "-m", "msgstate.workers", "apps", "read", "message-counter", "--association",
             "misc:message-count"], env=worker_env(settings), cwd=ROOT, capture_output=True, check=True)
        [line] = shown.stdout.splitlines()
        row = orjson.loads(line)
        assert row["data"] == {"count": 40} and row["associations"] == ["misc:message-count"]
        letters = subprocess.run([sys.executable, "-m", "msgstate.workers", "apps", "dead-letters", "flaky"],
                                 env=worker_env(settings), cwd=ROOT, capture_output=True, check=True)
        rows = [orjson.loads(line) for line in letters.stdout.splitlines()]
        assert sorted(r["event_id"] for r in rows) == sorted(m["id"] for m in booms)
        assert all(r["error"].startswith("ValueError: boom") for r in rows)
    finally:
        store.close()
        deployment.close()


def by_associations(deployment: AppsDeployment, app: str) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(sorted(str(a) for a in r.associations)): r.data for r in deployment.records(app)}


def test_apps_cli_bad_input_is_one_line(settings: Settings) -> None:
    for argv, says in [
        (["apps", "read", "message-counter", "--association", "channel:x"], "unknown association model"),
        (["apps", "read", "message-counter", "--association", "room"], "MODEL:ID"),
        (["apps", "read", "bad name"], "app name"),
    ]:
        done = subprocess.run([sys.executable, "-m", "msgstate.workers", *argv],
                              env=worker_env(settings), cwd=ROOT,
                              capture_output=True, check=False)
        assert done.returncode == 1, done
        assert done.stderr.decode().count("\n") == 1 and says in done.stderr.decode()
    env = {**worker_env(settings), "MSGSTATE_APPS": "no.such.module:App"}
    done = subprocess.run([sys.executable, "-m", "msgstate.workers", "worker", "--apps"], env=env, cwd=ROOT,
                          capture_output=True, check=False, timeout=60)
    assert done.returncode == 1 and b"cannot load 'no.such.module:App'" in done.stderr
