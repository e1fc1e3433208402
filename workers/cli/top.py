"""`msgstate top`: the busiest messages, state values and state names of the last minutes."""

from __future__ import annotations

import click
import orjson
from rich.console import Console
from rich.table import Table

from msgstate.workers.config import Settings
from msgstate.workers.services import probes
from msgstate.workers.services.analytics_store import AnalyticsStore


@click.command()
@click.option("--minutes", type=click.IntRange(1, 1440), default=15, show_default=True,
              help="How many of the last minutes to add up.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows per table.")
def top(minutes: int, limit: int) -> None:
    """Print the busiest messages and values, as counted by the analytics consumer."""
    settings = Settings.from_env()
    probes.require_redis(settings.redis)
    client = settings.redis_client(socket_timeout=10)
    try:
        found = AnalyticsStore(client, settings.key_prefix, settings.analytics_retention).top(minutes, limit)
    finally:
        client.close()
    console = Console()
    span = f"last {minutes} min"
    messages = Table(title=f"Busiest messages ({span})")
    messages.add_column("message")
    messages.add_column("changes", justify="right")
    for message_id, count in found["messages"]:
        messages.add_row(message_id, str(count))
    values = Table(title=f"Busiest values ({span})")
    values.add_column("state")
    values.add_column("value")
    values.add_column("set", justify="right")
    for (name, value), count in found["values"]:
        values.add_row(name, orjson.dumps(value).decode(), str(count))
    names = Table(title=f"Changes per state ({span})")
    names.add_column("state")
    names.add_column("changes", justify="right")
    for name, count in found["names"]:
        names.add_row(name, str(count))
    for table in (messages, values, names):
        console.print(table)
