"""The HTTP read API against the real stack: a state worker writes, the API reads and streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings
from msgstate.workers.services.http_api import build_app
from msgstate.workers.topics import ensure_topics

from .http_helpers import check_schema, path_of, react, sse_events, vote
from .pipeline_harness import Pipeline

MESSAGE = "layer:///messages/940de862"


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    pipe = Pipeline(settings)
    try:
        yield pipe
    finally:
        pipe.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    ensure_topics(settings)
    async with TestClient(TestServer(build_app(settings))) as test_client:
        yield test_client


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(URL(path, encoded=True))
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_summary_and_state_read_what_the_worker_wrote(
    client: TestClient[Any, Any], pipeline: Pipeline
) -> None:
    pipeline.start_worker()
    records = [react("r1", MESSAGE, "frodo", "👍"), react("r2", MESSAGE, "sam", "👍"),
               react("r3", MESSAGE, "sam", "🎉"), vote("r4", MESSAGE, "frodo", "b")]
    await asyncio.to_thread(pipeline.publish, records)
    await asyncio.to_thread(pipeline.await_applied)
    want = SummaryReader(pipeline.redis, pipeline.settings.keys).get_summary(MESSAGE)
    assert want["version"] == 4

    encoded = await get_json(client, f"/messages/{path_of(MESSAGE)}/summary")
    assert encoded == want
    check_schema("Summary", encoded)
    assert encoded["states"]["reactions"]["tally"] == [
        {"value": "👍", "count": 2}, {"value": "🎉", "count": 1}]
    # Raw slashes work too when nothing rewrites the path on the way.
    assert await get_json(client, f"/messages/{MESSAGE}/summary") == want

    clipped = await get_json(client, f"/messages/{path_of(MESSAGE)}/summary?clip=1")
    assert clipped["states"]["reactions"]["clipped"] is True
    assert clipped["states"]["reactions"]["identities"] == 2
    assert len(clipped["states"]["reactions"]["values"]) == 1

    state = await get_json(client, f"/messages/{path_of(MESSAGE)}/states/reactions?identity=u%2Fsam")
    assert state == {"message_id": MESSAGE, "part_id": "root", "name": "reactions",
                     "identity_id": "u/sam", "value": ["👍", "🎉"]}
    check_schema("StateValue", state)
    nobody = await get_json(client, f"/messages/{path_of(MESSAGE)}/states/poll_choice?identity=u%2Fsam")
    assert nobody["value"] is None
    check_schema("StateValue", nobody)

    unknown = await get_json(client, "/messages/no%2Fsuch%2Fmessage/summary?part=p1")
    assert unknown == {"message_id": "no/such/message", "part_id": "p1", "version": 0, "states": {}}


async def test_a_deleted_messages_summary_reads_as_deleted_for_any_part(
    client: TestClient[Any, Any], pipeline: Pipeline
) -> None:
    pipeline.start_worker()
    deletion = orjson.dumps({"kind": "delete_message", "id": "d1", "message_id": MESSAGE,
                             "identity_id": "mod"})
    await asyncio.to_thread(pipeline.publish, [react("r1", MESSAGE, "frodo", "👍"), deletion])
    await asyncio.to_thread(pipeline.await_applied)
    for part in ("root", "p1"):
        summary = await get_json(client, f"/messages/{path_of(MESSAGE)}/summary?part={part}")
        check_schema("Summary", summary)
        assert summary == {"message_id": MESSAGE, "part_id": part, "version": 2 if part == "root" else 0,
                           "states": {}, "deleted": True}
    state = await get_json(client, f"/messages/{path_of(MESSAGE)}/states/reactions?identity=u%2Ffrodo")
    assert state["value"] is None


@pytest.mark.parametrize(("path", "status", "words"), [
    (f"/messages/{path_of(MESSAGE)}/summary?clip=-1", 400, "clip"),
    (f"/messages/{path_of(MESSAGE)}/summary?clip=ten", 400, "clip"),
    (f"/messages/{path_of(MESSAGE)}/summary?part=", 400, "part"),
    (f"/messages/{path_of(MESSAGE)}/summary?part={'p' * 129}", 400, "part"),
    (f"/messages/{'m' * 257}/summary", 400, "message id"),
    (f"/messages/{path_of(MESSAGE)}/states/reactions", 400, "identity"),
    (f"/messages/{path_of(MESSAGE)}/states/reactions?identity=", 400, "identity"),
    (f"/messages/{path_of(MESSAGE)}/states/bad%20name?identity=u", 400, "state name"),
    (f"/messages/{path_of(MESSAGE)}/events?part=", 400, "part"),
    (f"/messages/{path_of(MESSAGE)}", 404, "Not Found"),
    ("/nothing/here", 404, "Not Found"),
])
async def test_bad_requests_get_a_clear_json_4xx(
    client: TestClient[Any, Any], path: str, status: int, words: str
) -> None:
    body = await get_json(client, path, status)
    check_schema("Error", body)
    assert words in body["detail"]


async def test_a_wrong_method_is_405_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.post(URL(f"/messages/{path_of(MESSAGE)}/summary", encoded=True))
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET,HEAD"
    body = await resp.json()
    check_schema("Error", body)
    assert body["error"] == "method_not_allowed"


async def test_events_stream_the_summary_then_each_change(
    client: TestClient[Any, Any], pipeline: Pipeline
) -> None:
    pipeline.start_worker()
    resp = await client.get(URL(f"/messages/{path_of(MESSAGE)}/events", encoded=True))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    events = sse_events(resp)
    first = await anext(events)
    assert first == ("summary", {"message_id": MESSAGE, "part_id": "root", "version": 0, "states": {}})

    other = "layer:///messages/other"
    await asyncio.to_thread(pipeline.publish, [
        react("r1", MESSAGE, "frodo", "👍"), react("o1", other, "frodo", "👀"),
        vote("r2", MESSAGE, "sam", "a"), vote("r3", MESSAGE, "frodo", "a")])
    changes: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    while summary.get("version") != 3:
        kind, data = await asyncio.wait_for(anext(events), 60)
        if kind == "change":
            changes.append(data)
        else:
            assert kind == "summary"
            check_schema("Summary", data)
            summary = data
    resp.close()
    assert [c["event_id"] for c in changes] == [
        f"{MESSAGE}/r1/reactions", f"{MESSAGE}/r2/poll_choice", f"{MESSAGE}/r3/poll_choice"]
    assert summary["states"]["poll_choice"]["tally"] == [{"value": "a", "count": 2}]
    assert summary["states"]["reactions"]["tally"] == [{"value": "👍", "count": 1}]


async def test_health_readiness_and_metrics(client: TestClient[Any, Any]) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok"}
    ready = await get_json(client, "/readyz")
    assert ready == {"status": "ready", "checks": {"redis": True, "kafka": True}}
    check_schema("Ready", ready)
    await get_json(client, "/messages/m/summary?clip=x", 400)
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    route = "/messages/{message_id}/summary"
    assert f'msgstate_http_requests_total{{method="GET",route="{route}",status="400"}} 1.0' in text
    assert 'msgstate_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in text
    assert "msgstate_http_sse_streams 0.0" in text


async def test_readiness_fails_when_redis_is_gone(settings: Settings) -> None:
    ensure_topics(settings)
    gone = settings.with_(redis="redis://127.0.0.1:1/0")
    async with TestClient(TestServer(build_app(gone))) as test_client:
        ready = await get_json(test_client, "/readyz", 503)
        assert ready == {"status": "not_ready", "checks": {"redis": False, "kafka": True}}
        body = await get_json(test_client, "/messages/m/summary", 503)
        assert body["error"] == "redis_unavailable"
        assert "127.0.0.1:1" in body["detail"]
