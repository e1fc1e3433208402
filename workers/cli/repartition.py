"""`msgstate repartition --partitions N`: grow the responses topic and move the state with it."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from msgstate.workers.config import Settings
from msgstate.workers.services import probes


@click.command()
@click.option("--partitions", type=click.IntRange(min=2), required=True,
              help="The new partition count of the responses topic (more than MSGSTATE_PARTITIONS).")
def repartition(partitions: int) -> None:
    """Add partitions to the responses topic and move every message's state to the keys of its
    new partition. The state workers must be stopped, with every record applied; start them
    (and the HTTP API and SDK clients) again with MSGSTATE_PARTITIONS=N."""
    from msgstate.workers.tools.repartition import repartition as run

    settings = Settings.from_env()
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    probes.require_redis(settings.redis)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} keys"),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("moving state", total=None)
        moved = run(settings, partitions, lambda n: progress.advance(task, n))
    topic = settings.topics.responses
    added = (f"added {moved.added} partitions to {topic}" if moved.added
             else f"{topic} already had {partitions} partitions")
    click.echo(f"{added}; moved {moved.keys} keys of {len(moved.messages)} messages. Start the state "
               f"workers, the HTTP API and SDK clients with MSGSTATE_PARTITIONS={partitions}, and "
               "restart producers so that they key records over the new count.")
