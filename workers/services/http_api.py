"""The HTTP read API: summaries, per-user state and a live stream of a message's changes.

Message ids hold slashes (`layer:///messages/940de862`): in a path they go percent-encoded as
one segment (`layer%3A%2F%2F%2Fmessages%2F940de862`, what `encodeURIComponent` gives). The
route's id pattern also spans raw slashes, so an unencoded id works when nothing between the
client and the API rewrites the path. The contract is `http_static/openapi.json`, served at
`/openapi.json`.

With token keys configured, every route that reads a message needs a bearer token whose
patterns cover it (http_auth); an event stream ends when its token does. Without keys reads are
open, and the command serves loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
import redis
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from msgstate.schemas.limits import (
    DEFAULT_PART,
    MAX_IDENTITY_ID,
    MAX_MESSAGE_ID,
    MAX_NAME,
    MAX_PART_ID,
    NAME_CHARS,
)
from msgstate.streams.storage.client import SyncRedis
from msgstate.streams.storage.reader import SummaryReader
from msgstate.workers.config import Settings
from msgstate.workers.services.change_feed import ChangeFeed, Subscription
from msgstate.workers.services.http_auth import Grant, TokenRefused, TokenVerifier, bearer_token
from msgstate.workers.services.http_limits import StreamSlots, TooManyStreams

HEARTBEAT = 15.0  # seconds between SSE comments, so proxies keep an idle stream open
NAME = re.compile(f"[{NAME_CHARS}]{{1,{MAX_NAME}}}")
ID = "{message_id:.+}"  # spans slashes; percent-encoded ids arrive decoded
REALM = "msgstate"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



class BadRequest(web.HTTPBadRequest):
    """A 400 whose JSON body says which parameter is wrong and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(text=_error_body("bad_request", detail), content_type="application/json")


def _error_body(error: str, detail: str) -> str:
    return orjson.dumps({"error": error, "detail": detail}).decode()


def _challenge(error: str) -> dict[str, str]:
    """RFC 6750's `WWW-Authenticate`: no error code when the request carried no token."""
    return {"WWW-Authenticate": f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")}


class Metrics:
    def __init__(self, feed: ChangeFeed) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("msgstate_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("msgstate_http_request_duration_seconds",
                                 "Time to answer an HTTP request (an SSE stream: until it closes)",
                                 ["route"], registry=self.registry)
        streams = Gauge("msgstate_http_sse_streams", "Open server-sent-event streams",
                        registry=self.registry)
        streams.set_function(lambda: feed.subscribers)
        seen = Gauge("msgstate_http_change_events_read",
                     "Summary-change events read by this process since it started",
                     registry=self.registry)
        seen.set_function(lambda: feed.events_seen)


SETTINGS = web.AppKey("settings", Settings)
READER = web.AppKey("reader", SummaryReader)
REDIS: web.AppKey[SyncRedis] = web.AppKey("redis")
FEED = web.AppKey("feed", ChangeFeed)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER: web.AppKey[TokenVerifier | None] = web.AppKey("verifier")
SLOTS = web.AppKey("slots", StreamSlots)


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def json_errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        # aiohttp's own 404 / 405 answers are text; every error here is JSON.
        return web.Response(status=exc.status, headers=_allow(exc), content_type="application/json",
                            text=_error_body(exc.reason.lower().replace(" ", "_"), exc.text or exc.reason))
    except redis.RedisError as exc:
        status = 503
        settings = request.app[SETTINGS]
        raise web.HTTPServiceUnavailable(
            text=_error_body("redis_unavailable", f"Redis at {settings.redis}: {exc}"),
            content_type="application/json") from exc
    finally:
        route = _route_of(request)
        metrics.requests.labels(route, request.method, str(status)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


# --- who may read -----------------------------------------------------------------------------

def _authorize(request: web.Request, message_id: str, query_token: bool) -> Grant | None:
    """The request's grant, if it may read `message_id`; None when reads need no token."""
    verifier = request.app[VERIFIER]
    if verifier is None:
        return None
    try:
        token = bearer_token(request.headers.get("Authorization"),
                             request.query.get("token") if query_token else None)
        grant = verifier.verify(token)
    except TokenRefused as exc:
        raise web.HTTPUnauthorized(text=_error_body(exc.error or "unauthorized", exc.detail),
                                   content_type="application/json", headers=_challenge(exc.error)) from None
    if not grant.may_read(message_id):
        raise web.HTTPForbidden(
            text=_error_body("insufficient_scope", "this token may not read this message"),
            content_type="application/json", headers=_challenge("insufficient_scope"))
    return grant


# --- parameters ---------------------------------------------------------------------------

def _message_id(request: web.Request, query_token: bool = False) -> tuple[str, Grant | None]:
    """The path's message id, once the request's token may read it (`?token=` where allowed)."""
    message_id = request.match_info["message_id"]
    grant = _authorize(request, message_id, query_token)
    if len(message_id) > MAX_MESSAGE_ID:
        raise BadRequest(f"message id is {len(message_id)} characters; at most {MAX_MESSAGE_ID}")
    return message_id, grant


def _part(request: web.Request) -> str:
    part = request.query.get("part", DEFAULT_PART)
    if not 1 <= len(part) <= MAX_PART_ID:
        raise BadRequest(f"part must be 1-{MAX_PART_ID} characters")
    return part


def _clip(request: web.Request) -> int | None:
    raw = request.query.get("clip")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"clip must be a non-negative integer, not {raw!r}")
    return int(raw)


def _identity(request: web.Request) -> str:
    identity = request.query.get("identity")
    if identity is None:
        raise BadRequest("identity is required: ?identity=<identity id>")
    if not 1 <= len(identity) <= MAX_IDENTITY_ID:
        raise BadRequest(f"identity must be 1-{MAX_IDENTITY_ID} characters")
    return identity


def _state_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise BadRequest(f"state name {name!r} must be 1-{MAX_NAME} of A-Z a-z 0-9 _ . : -")
    return name


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


# --- handlers -------------------------------------------------------------------------------

async def get_summary(request: web.Request) -> web.Response:
    message_id, _ = _message_id(request)
    part, clip = _part(request), _clip(request)
    reader = request.app[READER]
    return _json(await asyncio.to_thread(reader.get_summary, message_id, part, clip))


async def get_state(request: web.Request) -> web.Response:
    message_id, _ = _message_id(request)
    name, part = _state_name(request), _part(request)
    identity = _identity(request)
    value = await asyncio.to_thread(request.app[READER].get_state, message_id, name, identity, part)
    return _json({"message_id": message_id, "part_id": part, "name": name,
                  "identity_id": identity, "value": value})


async def stream_events(request: web.Request) -> web.StreamResponse:
    """SSE: the summary now, then every change of this part and the summary after it, until the
    token expires (`event: expired` then); `?token=` too, as `EventSource` sets no headers."""
    message_id, grant = _message_id(request, query_token=True)
    part = _part(request)
    try:
        with request.app[SLOTS].hold(grant.token_id if grant else None):
            return await _stream(request, message_id, part, grant)
    except TooManyStreams as exc:
        raise web.HTTPTooManyRequests(text=_error_body("too_many_streams", exc.detail),
                                      content_type="application/json") from None


async def _stream(request: web.Request, message_id: str, part: str, grant: Grant | None
                  ) -> web.StreamResponse:
    reader = request.app[READER]
    with request.app[FEED].subscribe(message_id) as sub:
        # Subscribed before the first read: a change landing in between is not lost.
        summary = await asyncio.to_thread(reader.get_summary, message_id, part, None)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        expiry = asyncio.timeout(grant.until - time.time() if grant else None)
        # A client that went away is noticed at the next write (or cancels the handler).
        with contextlib.suppress(ConnectionResetError):
            try:
                async with expiry:
                    await _follow(response, sub, reader, part, summary)
            except TimeoutError:
                if not expiry.expired():
                    raise
                await _send(response, "expired", {"error": "token_expired",
                                                  "detail": "the token expired: reconnect with a fresh one"})
    return response


async def _follow(response: web.StreamResponse, sub: Subscription, reader: SummaryReader, part: str,
                  summary: dict[str, Any]) -> None:
    message_id = sub.message_id
    await _send(response, "summary", summary, summary["version"])
    version = int(summary["version"])
    async for changes in _batches(sub):
        fresh = [c for c in changes if c.get("part_id") == part and int(c.get("version", 0)) > version]
        for change in fresh:
            await _send(response, "change", change)
        if fresh or sub.overflowed:
            sub.overflowed = False
            summary = await asyncio.to_thread(reader.get_summary, message_id, part, None)
            if summary["version"] > version:
                version = int(summary["version"])
                await _send(response, "summary", summary, version)
        elif not changes:
            await response.write(b": keep-alive\n\n")


async def _batches(sub: Subscription) -> AsyncIterator[list[dict[str, Any]]]:
    """What arrived, in batches; an empty batch after HEARTBEAT seconds of silence."""
    while True:
        try:
            first = await asyncio.wait_for(sub.queue.get(), HEARTBEAT)
        except TimeoutError:
            yield []
            continue
        yield [first, *sub.drain()]


async def _send(response: web.StreamResponse, event: str, data: Any, event_id: int | None = None) -> None:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    await response.write(head.encode() + b"data: " + orjson.dumps(data) + b"\n\n")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Redis answers and the change feed is reading."""
    checks = {"redis": True, "kafka": request.app[FEED].ready}
    try:
        await asyncio.to_thread(request.app[REDIS].ping)
    except redis.RedisError:
        checks["redis"] = False
    ready = all(checks.values())
    return web.Response(body=orjson.dumps({"status": "ready" if ready else "not_ready", "checks": checks}),
                        status=200 if ready else 503, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def static_text(name: str) -> str:
    return resources.files("msgstate.workers.services").joinpath("http_static", name).read_text("utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=static_text("openapi.json"), content_type="application/json")


async def live_page(request: web.Request) -> web.Response:
    return web.Response(text=static_text("live.html"), content_type="text/html")


class AccessLog(AbstractAccessLogger):
    """One line per request, as `%r %s %b %Tf` would write it, with any `?token=` blanked."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        url = request.rel_url
        if "token" in url.query:
            url = url.with_query([(k, "***" if k == "token" else v) for k, v in url.query.items()])
        version = f"{request.version.major}.{request.version.minor}"
        self.logger.info(f"{request.method} {url} HTTP/{version} {response.status} "
                         f"{response.body_length} {time:.6f}")


# --- the application ----------------------------------------------------------------------------

def build_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[json_errors_and_metrics])
    app[SETTINGS] = settings
    client = settings.redis_client(socket_timeout=5, socket_connect_timeout=5)
    feed = ChangeFeed(settings.kafka, settings.topics.summary_changes,
                      settings.kafka_security.aiokafka())
    app[REDIS] = client
    app[READER] = SummaryReader(client, settings.keys)
    app[FEED] = feed
    app[METRICS] = Metrics(feed)
    app[VERIFIER] = TokenVerifier(settings.http_token_keys) if settings.http_token_keys else None
    app[SLOTS] = StreamSlots(settings.http_max_streams, settings.http_max_streams_per_token)
    app.router.add_get(f"/messages/{ID}/summary", get_summary)
    app.router.add_get(f"/messages/{ID}/states/{{name}}", get_state)
    app.router.add_get(f"/messages/{ID}/events", stream_events)
    app.router.add_get("/live", live_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)

    async def feed_running(app: web.Application) -> AsyncIterator[None]:
        await feed.start()
        yield
        await feed.stop()
        client.close()

    app.cleanup_ctx.append(feed_running)
    return app
