"""A healthy first start logs no errors: on a broker that has just started, the Kafka clients
retry while the group coordinator and the topics come up (GroupCoordinatorNotAvailable,
NotLeaderForPartition...), and the workers log that as warnings."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient

from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.stack import private_stack
from msgstate.workers.topics import topic_names

from ..conftest import ROOT
from ..waiting import wait_for
from .apps_harness import AppsDeployment, chat_message
from .pipeline_harness import Pipeline
from .processes import WorkerProcess

# A JSON log line at error level or worse, or a text one (the apps worker's faust format, the
# state worker's text format), or a traceback.
ERROR_LINE = re.compile(r'"level":\s*"(error|critical)"|\[(ERROR|CRITICAL)\]|\b(ERROR|CRITICAL) |Traceback')


@pytest.fixture
def fresh_broker() -> Iterator[Settings]:
    """Kafka and Redis started for this test alone: no group coordinator, no topics yet."""
    base = Settings(stack_dir=Path(os.environ.get("MSGSTATE_STACK_DIR", ROOT / ".stack")))
    with private_stack(base, partitions=4) as settings:
        tag = f"first{uuid.uuid4().hex[:8]}"
        yield settings.with_(topics=Topics(tag), key_prefix=tag, app_id=tag)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if ERROR_LINE.search(line)]


def counted(deployment: AppsDeployment) -> int:
    """The installed message counter's count (streams/apps/message_counter.py)."""
    return sum(record.data.get("count", 0) for record in deployment.records("message-counter"))


def topics_exist(settings: Settings) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka)
    try:
        return set(topic_names(settings)) <= set(admin.list_topics())
    finally:
        admin.close()


@pytest.mark.parametrize("apps", [False, True], ids=["state worker", "apps worker"])
def test_the_first_start_on_a_fresh_broker_logs_no_error_lines(fresh_broker: Settings,
                                                               apps: bool) -> None:
    """Each kind on a broker of its own: the first to ask for a group coordinator is told
    GroupCoordinatorNotAvailable while the broker creates its offsets topic."""
    settings = fresh_broker
    worker = WorkerProcess(settings, ["-m", "msgstate.workers", "worker", *(["--apps"] if apps else [])],
                           name="apps" if apps else "state")
    deployment: Pipeline | AppsDeployment | None = None
    try:
        # The worker creates the topics, then joins its group.
        wait_for(lambda: topics_exist(settings), bool, timeout=60, interval=0.5,
                 what=lambda: "the worker to create the topics\n" + worker.output())
        if apps:
            deployment = host = AppsDeployment(settings)
            host.workers.append(worker)
            host.publish_messages([chat_message(n, rooms=2) for n in range(4)])
            # Read from Redis: asking Kafka for the group's offsets would find the coordinator
            # before the worker does.
            wait_for(lambda: counted(host), lambda n: n == 4, timeout=150, interval=0.5,
                     what=lambda: "the installed message counter to count 4\n" + worker.output())
        else:
            deployment = Pipeline(settings)
            deployment.workers.append(worker)
            deployment.publish([orjson.dumps({
                "id": f"r{n}", "message_id": f"first/messages/{n % 3}", "identity_id": f"u{n}",
                "changes": [{"operation": "add", "type": "Set", "name": "reactions", "value": "👍"}],
            }) for n in range(6)])
            deployment.await_applied(timeout=120)
    finally:
        worker.stop()
        if deployment is not None:
            deployment.workers.clear()
            deployment.close()
    output = worker.output(tail=200_000)
    assert error_lines(output) == [], output[-4000:]
