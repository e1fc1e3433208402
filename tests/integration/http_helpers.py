"""Helpers for the HTTP API tests: responses to publish, an SSE reader, OpenAPI schemas, a running
`msgstate http` with or without token keys."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import jsonschema
import orjson
import pytest

from msgstate.streams.engine.signing import SigningKey
from msgstate.workers.config import Settings
from msgstate.workers.services.http_api import static_text
from msgstate.workers.tools import stack

from ..waiting import wait_for
from .processes import WorkerProcess

OPENAPI: dict[str, Any] = json.loads(static_text("openapi.json"))
# The API's token keys, newest first; RETIRED was dropped from them.
NEW_KEY = SigningKey("k2", b"new token key, thirty-two bytes!")
OLD_KEY = SigningKey("k1", b"old token key, thirty-two bytes!")
RETIRED_KEY = SigningKey("k0", b"retired token key, 32 bytes long")


def key_spec(*keys: SigningKey) -> str:
    """`MSGSTATE_HTTP_TOKEN_KEYS` for these keys, in this order."""
    return ",".join(f"{key.key_id}:{base64.b64encode(key.secret).decode()}" for key in keys)


TOKEN_ENV = {"MSGSTATE_HTTP_TOKEN_KEYS": key_spec(NEW_KEY, OLD_KEY)}


def path_of(message_id: str) -> str:
    """A message id as one percent-encoded path segment, as encodeURIComponent makes it."""
    return quote(message_id, safe="")


def check_schema(component: str, data: Any) -> None:
    """Validate data against one of the OpenAPI document's component schemas."""
    schema = {**OPENAPI, "$ref": f"#/components/schemas/{component}"}
    jsonschema.Draft202012Validator(schema).validate(data)


def response(rid: str, message_id: str, identity: str, change: dict[str, Any], text: str | None = None
             ) -> bytes:
    return orjson.dumps({"id": rid, "message_id": message_id, "identity_id": identity,
                         "changes": [change], "status_text": text})


def react(rid: str, message_id: str, user: str, emoji: str, op: str = "add") -> bytes:
    return response(rid, message_id, f"u/{user}",
                    {"operation": op, "type": "Set", "name": "reactions", "value": emoji},
                    f"{user} reacted {emoji}" if op == "add" else f"{user} took back {emoji}")


def vote(rid: str, message_id: str, user: str, choice: str) -> bytes:
    return response(rid, message_id, f"u/{user}",
                    {"operation": "add", "type": "FWW", "name": "poll_choice", "value": choice},
                    f"{user} voted {choice}")


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) pairs of a text/event-stream; comments are skipped."""
    event, data = "message", []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, orjson.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


@pytest.fixture(name="http_url")
def serve_http(settings: Settings) -> Iterator[str]:
    """`msgstate http` as its own process, without token keys (loopback), once it reports ready."""
    with running_http(settings, {"MSGSTATE_HTTP_TOKEN_KEYS": ""}) as (url, _):
        yield url


@pytest.fixture(name="secured_http_url")
def serve_secured_http(settings: Settings) -> Iterator[str]:
    """`msgstate http` whose reads need tokens signed with NEW_KEY or OLD_KEY."""
    with running_http(settings, TOKEN_ENV) as (url, _):
        yield url


@contextlib.contextmanager
def running_http(settings: Settings, env: Mapping[str, str], args: tuple[str, ...] = ()
                 ) -> Iterator[tuple[str, WorkerProcess]]:
    """`msgstate http` with `env` on a free loopback port, once /readyz answers 200; then stopped."""
    port = stack.free_port_pair()
    proc = WorkerProcess(settings, ["-m", "msgstate.workers", "http", "--port", str(port), *args],
                         name="http", env=env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> int:
        proc.check()
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                return int(answer.status)
        except (urllib.error.URLError, ConnectionError):
            return 0

    try:
        wait_for(ready, lambda status: status == 200, timeout=60, what=lambda: proc.output())
        yield url, proc
    finally:
        proc.stop()
