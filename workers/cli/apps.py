"""`msgstate apps …`: what is installed, what an app keeps, what failed; and the apps worker's start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import faust
import orjson

from msgstate.schemas.exceptions import ConfigError, MsgstateError
from msgstate.streams.apps.host import handlers_of, invalid_key, read_dead_letters
from msgstate.streams.apps.persistence import PersistenceRead
from msgstate.streams.apps.persistence_model import AppRecord, AssociationRecord, check_app_name
from msgstate.streams.storage.client import AsyncRedis
from msgstate.streams.storage.layout import AppKeys
from msgstate.workers import logs
from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.services import probes
from msgstate.workers.services.apps_worker import apps_from_env, build_app

T = TypeVar("T")


def run_apps_worker(settings: Settings, loglevel: str) -> None:
    """`msgstate worker --apps`: run the installed apps until SIGTERM / SIGINT."""
    apps = apps_from_env()
    if not any(handlers_of(app) for app in apps.values()):
        raise ConfigError("no installed app has a handler: install one (entry point group msgstate.apps) "
                          "or name them in MSGSTATE_APPS=module:attr,...")
    AppsWorker(build_app(settings, apps), loglevel=loglevel, quiet=True).execute_from_commandline()


class AppsWorker(faust.Worker):
    """faust's worker, whose logging also lowers the Kafka client's retried errors to warnings
    (a fresh stack's first start logs GroupCoordinatorNotAvailable until the group forms)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logs.lower_retried(logger)


def _with_redis(settings: Settings, work: Callable[[AsyncRedis], Awaitable[T]]) -> T:
    probes.require_redis(settings.redis)

    async def run() -> T:
        client = settings.async_redis_client(socket_timeout=10)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _echo(row: Any) -> None:
    click.echo(orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode())


HELP = with_environment(
    """Apps: list the installed ones, read their persistence, show their failed events.

    `msgstate worker --apps` runs the installed apps on chat messages and state changes.""",
    "MSGSTATE_APPS", "MSGSTATE_REDIS", "MSGSTATE_KEY_PREFIX", "MSGSTATE_KAFKA")


@click.group(help=HELP)
def apps() -> None:
    pass


@apps.command("list")
def list_apps() -> None:
    """The installed apps (MSGSTATE_APPS, else the msgstate.apps entry points) and their handlers."""
    for name, app in apps_from_env().items():
        kind = type(app)
        _echo({"app": name, "handlers": handlers_of(app), "class": f"{kind.__module__}.{kind.__qualname__}"})


@apps.command("read")
@click.argument("app")
@click.option("--association", "-a", "associations", multiple=True, metavar="MODEL:ID",
              help="Only records with this association (repeat: all of them).")
@click.option("--id", "record_id", default=None, help="Only the record with this id.")
def read(app: str, associations: tuple[str, ...], record_id: str | None) -> None:
    """Print APP's records, one JSON line each: id, data, associations, revision."""
    if associations and record_id is not None:
        raise click.UsageError("give --association or --id, not both")
    wanted = [AssociationRecord.parse(a) for a in associations]
    settings = Settings.from_env()

    async def work(client: AsyncRedis) -> list[AppRecord]:
        reader = PersistenceRead(client, settings.key_prefix, app)
        if record_id is not None:
            found = await reader.read_record(record_id)
            return [found] if found else []
        return await (reader.read_records_by_associations(wanted) if wanted else reader.read_all())

    for record in _with_redis(settings, work):
        _echo({"id": record.id, "data": record.data, "revision": record.revision,
               "associations": sorted(str(a) for a in record.associations)})


@apps.command("dead-letters")
@click.argument("app", required=False)
@click.option("--count", "-n", type=click.IntRange(min=1), default=100, show_default=True)
def dead_letters(app: str | None, count: int) -> None:
    """Print APP's newest failed handler calls (without APP: events no app could decode)."""
    settings = Settings.from_env()
    key = AppKeys(settings.key_prefix, check_app_name(app)).dead if app else invalid_key(settings.key_prefix)
    try:
        rows = _with_redis(settings, lambda client: read_dead_letters(client, key, count))
    except UnicodeDecodeError as exc:
        raise MsgstateError(f"{key} holds something that is not text: {exc}") from exc
    for row in rows:
        _echo(row)
