"""`msgstate http`: serve the HTTP read API and the live page until SIGTERM / SIGINT."""

from __future__ import annotations

import logging

import click
from aiohttp import web

from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.logs import configure as configure_logs
from msgstate.workers.services import probes
from msgstate.workers.services.http_api import build_app
from msgstate.workers.topics import ensure_topics

HELP = with_environment(
    """Serve the HTTP read API (summaries, state, live changes) and the live page.

    The live page of a message is /live?message=ID. It serves until SIGTERM or SIGINT.""",
    "MSGSTATE_REDIS", "MSGSTATE_KAFKA", "MSGSTATE_HTTP_HOST", "MSGSTATE_HTTP_PORT")


@click.command("http", help=HELP)
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Listen on this port instead of MSGSTATE_HTTP_PORT.")
def http(port: int | None) -> None:
    settings = Settings.from_env()
    probes.require_redis(settings.redis)
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    ensure_topics(settings, [settings.topics.summary_changes])
    configure_logs()
    logging.getLogger("msgstate.http").info(
        "listening", extra={"host": settings.http_host, "port": port or settings.http_port})
    web.run_app(build_app(settings), host=settings.http_host, port=port or settings.http_port,
                print=None, access_log_format='%r %s %b %Tf')
