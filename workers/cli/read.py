"""`msgstate summary`: read a Response Summary straight from Redis."""

from __future__ import annotations

import click
import orjson

from msgstate.workers.config import Settings
from msgstate.workers.services import probes


@click.command()
@click.argument("message_id")
@click.option("--part", default="root", show_default=True, help="The message part.")
@click.option("--clip", type=click.IntRange(min=0), default=None,
              help="List at most N identities per state (tallies are never clipped).")
def summary(message_id: str, part: str, clip: int | None) -> None:
    """Print the summary of MESSAGE_ID as JSON (SPEC section 4)."""
    from msgstate.streams.storage.reader import SummaryReader

    settings = Settings.from_env()
    probes.require_redis(settings.redis)
    client = settings.redis_client(socket_timeout=10)
    try:
        found = SummaryReader(client, settings.keys).get_summary(message_id, part, clip)
    finally:
        client.close()
    click.echo(orjson.dumps(found, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode())
