"""Who may read: a running `msgstate http` with token keys, on the real stack.

Every route that reads a message answers 401 without a token or with one that does not verify,
403 for a token of other messages, and 200 where a pattern of the token matches; event streams
end with their token and are bounded; without keys the command keeps to loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from msgstate.streams.engine.signing import SigningKey
from msgstate.streams.sdk import mint_token
from msgstate.workers.config import Settings

from ..conftest import worker_env
from ..waiting import wait_for
from .http_helpers import (
    NEW_KEY,
    OLD_KEY,
    RETIRED_KEY,
    TOKEN_ENV,
    check_schema,
    key_spec,
    path_of,
    react,
    running_http,
    sse_events,
)
from .http_helpers import serve_secured_http as serve_secured_http  # the secured_http_url fixture
from .pipeline_harness import Pipeline

MESSAGE = "layer:///messages/940de862"
OTHER = "layer:///rooms/secret/messages/1"
ROUTES = ("summary", "states/reactions?identity=u%2Fsam", "events")


def url_of(base: str, message_id: str, route: str) -> str:
    return f"{base}/messages/{path_of(message_id)}/{route}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_for(*patterns: str, key: SigningKey = NEW_KEY, ttl: float = 600, now: float | None = None) -> str:
    return mint_token(key, list(patterns), ttl, now=now)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}.{signature}"


def with_claims(token: str, **changes: Any) -> str:
    """The token with its claims changed and its signature kept: tampered with."""
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64url(orjson.dumps({**claims, **changes}))}.{signature}"


def bad_tokens() -> dict[str, str]:
    """Tokens a reader might try, none of which may read MESSAGE."""
    soon = int(time.time()) + 600
    good = token_for(MESSAGE)
    return {
        "expired": token_for(MESSAGE, ttl=60, now=time.time() - 120),
        "wrong key": token_for(MESSAGE, key=SigningKey(NEW_KEY.key_id, b"not the key, but 32 bytes long!!")),
        "retired key": token_for(MESSAGE, key=RETIRED_KEY),
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": NEW_KEY.key_id},
                             {"messages": [MESSAGE], "exp": soon}),
        "alg HS512": signed({"messages": [MESSAGE], "exp": soon}, algorithm="HS512"),  # the right key
        "tampered claims": with_claims(token_for(OTHER), messages=[MESSAGE]),
        "tampered expiry": with_claims(token_for(MESSAGE, ttl=60, now=time.time() - 120), exp=soon),
        "no exp": signed({"messages": [MESSAGE]}),
        "no messages": signed({"exp": soon}),
        "messages not a list": signed({"messages": MESSAGE, "exp": soon}),
        "empty messages": signed({"messages": [], "exp": soon}),
        "no kid": signed({"messages": [MESSAGE], "exp": soon}, kid=None),
        "garbage": "not-a-jwt",
        "signature cut": good.rsplit(".", 1)[0] + ".",
    }


def signed(claims: dict[str, Any], algorithm: str = "HS256", kid: str | None = NEW_KEY.key_id) -> str:
    """A token signed with NEW_KEY's secret, whatever its claims and algorithm."""
    with warnings.catch_warnings():  # 32 bytes are short for HS512: a warning, here on purpose
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, NEW_KEY.secret, algorithm=algorithm, headers={"kid": kid} if kid else None)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as http:
        yield http


@pytest.fixture
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    pipe = Pipeline(settings)
    try:
        yield pipe
    finally:
        pipe.close()


async def refused(http: aiohttp.ClientSession, url: str, status: int, headers: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    """The JSON error of a refused read, after checking its status and challenge."""
    async with http.get(url, headers=headers or {}) as resp:
        body = await resp.json()
        assert resp.status == status, (url, body)
        check_schema("Error", body)
        if status in (401, 403):
            challenge = resp.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="msgstate"'), challenge
            expected = {401: body["error"], 403: "insufficient_scope"}[status]
            if expected != "unauthorized":
                assert f'error="{expected}"' in challenge
        assert isinstance(body, dict)
        return body


async def test_reads_without_a_token_or_with_a_bad_one_are_401(
    secured_http_url: str, session: aiohttp.ClientSession
) -> None:
    for route in ROUTES:
        url = url_of(secured_http_url, MESSAGE, route)
        body = await refused(session, url, 401)
        assert body["error"] == "unauthorized" and "bearer token" in body["detail"]
        assert (await refused(session, url, 401, {"Authorization": "Basic dTpw"}))["error"] == "unauthorized"
        for name, token in bad_tokens().items():
            body = await refused(session, url, 401, bearer(token))
            assert body["error"] == "invalid_token", (name, body)
        # The good token reads; on the stream, `?token=` does as well as the header.
        async with session.get(url, headers=bearer(token_for(MESSAGE))) as resp:
            assert resp.status == 200, await resp.text()
    expired = bad_tokens()["expired"]
    assert "expired" in (await refused(session, url_of(secured_http_url, MESSAGE, "summary"), 401,
                                       bearer(expired)))["detail"]
    # Only the stream takes a token in its query (EventSource sets no headers).
    await refused(session, url_of(secured_http_url, MESSAGE, f"summary?token={token_for(MESSAGE)}"), 401)
    for name, token in bad_tokens().items():
        body = await refused(session, url_of(secured_http_url, MESSAGE, f"events?token={token}"), 401)
        assert body["error"] == "invalid_token", name
    async with session.get(url_of(secured_http_url, MESSAGE, f"events?token={token_for(MESSAGE)}")) as resp:
        assert resp.status == 200
        assert (await anext(sse_events(resp)))[0] == "summary"


async def test_a_token_for_other_messages_is_403_on_every_route(
    secured_http_url: str, session: aiohttp.ClientSession
) -> None:
    token = token_for(MESSAGE, "layer:///rooms/open/*")
    for route in ROUTES:
        body = await refused(session, url_of(secured_http_url, OTHER, route), 403, bearer(token))
        assert body["error"] == "insufficient_scope"
    await refused(session, url_of(secured_http_url, OTHER, f"events?token={token}"), 403)
    # Patterns are not substrings, and only a trailing `*` is a wildcard.
    for almost in (MESSAGE + "0", MESSAGE[:-1], "layer:///rooms/open", "layer:///rooms/ope"):
        await refused(session, url_of(secured_http_url, almost, "summary"), 403, bearer(token))
    starred = token_for("layer:///rooms/*/messages/1")
    await refused(session, url_of(secured_http_url, OTHER, "summary"), 403, bearer(starred))


async def test_a_star_pattern_reads_the_ids_it_matches_and_no_others(
    secured_http_url: str, session: aiohttp.ClientSession, pipeline: Pipeline
) -> None:
    pipeline.start_worker()
    await asyncio.to_thread(pipeline.publish, [react("r1", MESSAGE, "sam", "👍"),
                                               react("r2", OTHER, "sam", "🤫")])
    await asyncio.to_thread(pipeline.await_applied)
    token = token_for("layer:///messages/*")
    async with session.get(url_of(secured_http_url, MESSAGE, "summary"), headers=bearer(token)) as resp:
        assert resp.status == 200
        summary = await resp.json()
    assert summary["states"]["reactions"]["tally"] == [{"value": "👍", "count": 1}]
    async with session.get(url_of(secured_http_url, MESSAGE, "states/reactions?identity=u%2Fsam"),
                           headers=bearer(token)) as resp:
        assert resp.status == 200 and (await resp.json())["value"] == ["👍"]
    for matching in ("layer:///messages/", "layer:///messages/any/depth/at/all"):
        async with session.get(url_of(secured_http_url, matching, "summary"), headers=bearer(token)) as resp:
            assert resp.status == 200, matching
    async with session.get(url_of(secured_http_url, MESSAGE, "events"), headers=bearer(token)) as resp:
        assert resp.status == 200
        kind, first = await anext(sse_events(resp))
        assert kind == "summary" and first["version"] == 1
    for route in ROUTES:
        await refused(session, url_of(secured_http_url, OTHER, route), 403, bearer(token))
    for outside in ("layer:///messages", "layer://messages/x", "x/layer:///messages/1"):
        await refused(session, url_of(secured_http_url, outside, "summary"), 403, bearer(token))


async def test_a_retired_keys_tokens_fail_and_msgstate_token_signs_with_the_first_key(
    settings: Settings, session: aiohttp.ClientSession
) -> None:
    def cli_token(*args: str) -> str:
        env = {**worker_env(settings), "MSGSTATE_HTTP_TOKEN_KEYS": key_spec(NEW_KEY, OLD_KEY)}
        done = subprocess.run([sys.executable, "-m", "msgstate.workers", "token", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    newest = cli_token("--messages", MESSAGE, "--ttl", "600")
    older = cli_token("--messages", MESSAGE, "--kid", OLD_KEY.key_id)
    assert [t.split(".")[0] for t in (newest, older)] == [
        b64url(orjson.dumps({"alg": "HS256", "kid": k, "typ": "JWT"})) for k in ("k2", "k1")]
    summary = url_of("{}", MESSAGE, "summary")
    with running_http(settings, TOKEN_ENV) as (url, _):
        for token in (newest, older):
            async with session.get(summary.format(url), headers=bearer(token)) as resp:
                assert resp.status == 200
    # The rotation's end: k1 is dropped, its tokens fail; k2's still read.
    with running_http(settings, {"MSGSTATE_HTTP_TOKEN_KEYS": key_spec(NEW_KEY)}) as (url, _):
        body = await refused(session, summary.format(url), 401, bearer(older))
        assert "kid" in body["detail"]
        async with session.get(summary.format(url), headers=bearer(newest)) as resp:
            assert resp.status == 200


async def test_a_stream_ends_when_its_token_expires(
    settings: Settings, session: aiohttp.ClientSession
) -> None:
    with running_http(settings, TOKEN_ENV) as (url, proc):
        token = token_for(MESSAGE, ttl=2)
        exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["exp"]
        events: list[tuple[str, Any]] = []
        async with session.get(url_of(url, MESSAGE, f"events?token={token}")) as resp:
            assert resp.status == 200
            async for event in sse_events(resp):  # until the server closes the stream
                events.append(event)
            closed = time.time()
        assert [kind for kind, _ in events] == ["summary", "expired"]
        assert events[1][1]["error"] == "token_expired"
        check_schema("Error", events[1][1])
        # At `exp` plus the 5 s allowed for clock skew: when the token stops verifying.
        assert exp + 5 - 0.5 <= closed <= exp + 5 + 3, (exp, closed)
        body = await refused(session, url_of(url, MESSAGE, f"events?token={token}"), 401)
        assert "expired" in body["detail"]
        # The access log writes both requests, never their token.
        logged = await asyncio.to_thread(
            wait_for, lambda: proc.output(100_000).replace("%2A", "*"),
            lambda out: out.count("events?token=***") >= 2, timeout=30, what="two access-log lines")
        assert token.split(".")[2] not in logged


async def test_event_streams_are_bounded_per_token_and_in_all(
    settings: Settings, session: aiohttp.ClientSession
) -> None:
    limits = {**TOKEN_ENV, "MSGSTATE_HTTP_MAX_STREAMS": "3", "MSGSTATE_HTTP_MAX_STREAMS_PER_TOKEN": "2"}
    first, second, third = (token_for(MESSAGE, f"layer:///messages/{n}") for n in range(3))
    events = url_of("{}", MESSAGE, "events")
    with running_http(settings, limits) as (url, _):
        async def open_stream(token: str) -> aiohttp.ClientResponse:
            resp = await session.get(events.format(url), headers=bearer(token))
            assert resp.status == 200
            assert (await anext(sse_events(resp)))[0] == "summary"  # the slot is held now
            return resp

        held = [await open_stream(first), await open_stream(first)]
        body = await refused(session, events.format(url), 429, bearer(first))
        assert body["error"] == "too_many_streams" and "token" in body["detail"]
        held.append(await open_stream(second))
        body = await refused(session, events.format(url), 429, bearer(third))
        assert "server" in body["detail"]
        # Summaries are not streams: they still read.
        async with session.get(url_of(url, MESSAGE, "summary"), headers=bearer(third)) as resp:
            assert resp.status == 200
        async with session.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        assert "msgstate_http_sse_streams 3.0" in metrics
        assert 'status="429"} 2.0' in metrics
        assert "940de862" not in metrics and "layer:" not in metrics  # no message ids in metrics

        held.pop(0).close()  # a client leaves: its slot frees without waiting for a write
        deadline = time.monotonic() + 30
        while True:
            resp = await session.get(events.format(url), headers=bearer(first))
            if resp.status == 200:
                held.append(resp)
                break
            assert resp.status == 429
            resp.release()
            assert time.monotonic() < deadline, "the closed stream's slot was never freed"
            await asyncio.sleep(0.1)
        for resp in held:
            resp.close()


async def test_health_readiness_metrics_the_document_and_the_page_need_no_token(
    secured_http_url: str, session: aiohttp.ClientSession
) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/live?message=m"):
        async with session.get(f"{secured_http_url}{path}") as resp:
            assert resp.status == 200, path


async def test_request_lines_and_headers_are_bounded(
    secured_http_url: str, session: aiohttp.ClientSession
) -> None:
    huge = "a" * 9000
    async with session.get(url_of(secured_http_url, MESSAGE, f"events?token={huge}")) as resp:
        assert resp.status in (400, 414)
    async with session.get(url_of(secured_http_url, MESSAGE, "summary"), headers=bearer(huge)) as resp:
        assert resp.status in (400, 431)
    many = {f"X-Filler-{n}": "x" for n in range(100)}
    async with session.get(url_of(secured_http_url, MESSAGE, "summary"), headers=many) as resp:
        assert resp.status in (400, 431)
    long_token = "a" * 5000  # fits the header, over the token bound: refused unread
    body = await refused(session, url_of(secured_http_url, MESSAGE, "summary"), 401, bearer(long_token))
    assert "4096" in body["detail"]
    async with session.get(f"{secured_http_url}/healthz") as resp:
        assert resp.status == 200


def run_http_command(settings: Settings, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**worker_env(settings), "MSGSTATE_HTTP_TOKEN_KEYS": "", **env}
    return subprocess.run([sys.executable, "-m", "msgstate.workers", "http", *args], env=full,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("env", "args"), [
    ({}, ("--host", "0.0.0.0")),
    ({"MSGSTATE_HTTP_HOST": "0.0.0.0"}, ()),
    ({"MSGSTATE_HTTP_HOST": "::"}, ()),
    ({"MSGSTATE_HTTP_INSECURE": "false"}, ("--host", "192.0.2.1")),
])
def test_binding_beyond_loopback_without_keys_is_refused_in_one_line(
    settings: Settings, env: dict[str, str], args: tuple[str, ...]
) -> None:
    started = time.monotonic()
    done = run_http_command(settings, env, *args)
    assert done.returncode == 1
    assert time.monotonic() - started < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("msgstate: refusing to serve")
    assert "MSGSTATE_HTTP_TOKEN_KEYS" in lines[0] and "MSGSTATE_HTTP_INSECURE=true" in lines[0]


async def test_without_keys_it_says_it_serves_loopback_and_insecure_serves_anywhere(
    settings: Settings, session: aiohttp.ClientSession
) -> None:
    with running_http(settings, {"MSGSTATE_HTTP_TOKEN_KEYS": ""}) as (url, proc):
        async with session.get(url_of(url, MESSAGE, "summary")) as resp:
            assert resp.status == 200  # loopback without keys: open
        assert "loopback" in proc.output() and "MSGSTATE_HTTP_TOKEN_KEYS" in proc.output()
    insecure = {"MSGSTATE_HTTP_TOKEN_KEYS": "", "MSGSTATE_HTTP_INSECURE": "true"}
    with running_http(settings, insecure, ("--host", "0.0.0.0")) as (url, proc):
        async with session.get(url_of(url, MESSAGE, "summary")) as resp:
            assert resp.status == 200
        assert "MSGSTATE_HTTP_INSECURE=true" in proc.output()
