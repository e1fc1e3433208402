"""`msgstate worker`: run a state worker until SIGTERM / SIGINT."""

from __future__ import annotations

import click
import faust

from workers import probes
from workers.config import Settings
from workers.state_worker import build_app
from workers.topics import ensure_topics


@click.command()
@click.option("--loglevel", "-l", default="warn", show_default=True,
              type=click.Choice(["crit", "error", "warn", "info", "debug"]))
@click.option("--apps", "apps", is_flag=True,
              help="Run the apps worker instead: the installed apps on chat messages and state changes.")
def worker(loglevel: str, apps: bool) -> None:
    """Run a state worker; several share the partitions of the responses topic."""
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    probes.require_redis(settings.redis)
    ensure_topics(settings)
    if apps:
        from workers.apps_command import run_apps_worker

        run_apps_worker(settings, loglevel)
        return
    app = build_app(settings)
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
