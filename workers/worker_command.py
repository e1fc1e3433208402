"""`msgstate worker`: run a state worker until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from workers import probes
from workers.config import Settings
from workers.state_worker import StateWorker
from workers.topics import ensure_topics

LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG}


@click.command()
@click.option("--loglevel", "-l", default="warn", show_default=True, type=click.Choice(list(LEVELS)))
def worker(loglevel: str) -> None:
    """Run a state worker; several share the partitions of the responses topic."""
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka)
    probes.require_redis(settings.redis)
    ensure_topics(settings)
    logging.basicConfig(level=LEVELS[loglevel], format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    state_worker = StateWorker(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, state_worker.stop)
    await state_worker.run()
