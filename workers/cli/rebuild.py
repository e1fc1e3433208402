"""`msgstate rebuild`: restore Redis from the state changelog (SPEC section 7a)."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.services import probes
from msgstate.workers.tools.rebuild import (
    quiet_kafka,
    read_changelog,
    refuse_while_workers_hold,
    restore,
)

HELP = with_environment(
    """Restore Redis from the state changelog, msgstate.state.

    Every partition whose fence in Redis is behind the changelog (Redis lost, or restored from an
    old backup) gets the changelog's state and its fence moves to where the changelog is complete;
    the workers then apply only the responses after it. Partitions already current are left as
    they are, so running it twice changes nothing. It refuses while state workers are in their
    consumer group, and names what it could not restore (exit status 1 then).""",
    "MSGSTATE_KAFKA", "MSGSTATE_REDIS", "MSGSTATE_PARTITIONS", "MSGSTATE_APP_ID")


@click.command(help=HELP)
def rebuild() -> None:
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    probes.require_redis(settings.redis)
    quiet_kafka()
    refuse_while_workers_hold(settings)
    started = time.monotonic()
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        reading = bar.add_task(f"reading {settings.topics.state}", total=None)
        state, first_kept = read_changelog(
            settings, lambda done, total: bar.update(reading, completed=done, total=total))
        writing = bar.add_task("restoring partitions", total=None)
        outcome = restore(settings, state, first_kept,
                          lambda done, total: bar.update(writing, completed=done, total=total))
    seconds = time.monotonic() - started
    restored = ", ".join(f"{p} (fence {offset})" for p, offset in sorted(outcome.restored.items()))
    click.echo(f"read {outcome.records:,} changelog records; restored {len(outcome.restored)} "
               f"partition(s) with {outcome.values:,} values in {seconds:.1f} s"
               + (f": {restored}" if restored else ""))
    if outcome.current:
        click.echo(f"already current, left as they are: partitions {', '.join(map(str, outcome.current))}")
    for line in outcome.lost:
        click.echo(f"not restored: {line}", err=True)
    if outcome.lost:
        sys.exit(1)
