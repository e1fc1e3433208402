"""`msgstate http`: serve the HTTP read API and the live page until SIGTERM / SIGINT."""

from __future__ import annotations

import logging

import click
from aiohttp import web

from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.logs import configure as configure_logs
from msgstate.workers.services import probes
from msgstate.workers.services.http_api import AccessLog, build_app
from msgstate.workers.services.http_auth import check_exposure
from msgstate.workers.services.http_limits import MAX_FIELD_SIZE, MAX_HEADERS, MAX_LINE_SIZE
from msgstate.workers.topics import ensure_topics

HELP = with_environment(
    """Serve the HTTP read API (summaries, state, live changes) and the live page.

    Reads need a bearer token signed with a key of MSGSTATE_HTTP_TOKEN_KEYS (`msgstate token`
    mints one); without keys it serves loopback addresses only. The live page of a message is
    /live?message=ID&token=TOKEN. It serves until SIGTERM or SIGINT.""",
    "MSGSTATE_REDIS", "MSGSTATE_KAFKA", "MSGSTATE_HTTP_HOST", "MSGSTATE_HTTP_PORT",
    "MSGSTATE_HTTP_TOKEN_KEYS")


@click.command("http", help=HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Listen on this port instead of MSGSTATE_HTTP_PORT.")
@click.option("--host", default=None, help="Listen on this address instead of MSGSTATE_HTTP_HOST.")
def http(port: int | None, host: str | None) -> None:
    settings = Settings.from_env()
    host = settings.http_host if host is None else host
    port = port or settings.http_port
    # Before anything is reached: an exposed, tokenless API is refused in one line.
    check_exposure(host, settings.http_token_keys, settings.http_insecure)
    probes.require_redis(settings.redis)
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    ensure_topics(settings, [settings.topics.summary_changes])
    configure_logs()
    log = logging.getLogger("msgstate.http")
    if settings.http_token_keys:
        log.info("reads need a bearer token",
                 extra={"token_keys": [key.key_id for key in settings.http_token_keys]})
    elif settings.http_insecure:
        log.warning(f"MSGSTATE_HTTP_INSECURE=true: serving every message without tokens on {host}")
    else:
        log.warning(f"no MSGSTATE_HTTP_TOKEN_KEYS: serving without tokens, on loopback {host} only")
    log.info("listening", extra={"host": host, "port": port})
    # Cancel a handler whose client left, so a closed event stream frees its slot at once.
    web.run_app(build_app(settings), host=host, port=port, print=None, access_log_class=AccessLog,
                handler_cancellation=True, max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE,
                max_headers=MAX_HEADERS)
