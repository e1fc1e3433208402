"""`msgstate worker`: run a state worker until SIGTERM / SIGINT.

The first signal lets the worker finish the batch in hand, commit, drop delivered outputs from
the outboxes and leave its group; it must be done within MSGSTATE_SHUTDOWN_SECONDS, or it is cut
short (exit status 1: what it had not persisted is read again by the next holder). A second
signal cuts it short at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

import click

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.registry import parse_registry
from msgstate.workers import logs
from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.services import probes
from msgstate.workers.services.metrics import WorkerMetrics, serve
from msgstate.workers.services.state_worker import StateWorker
from msgstate.workers.topics import ensure_topics

LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING,
          "info": logging.INFO, "debug": logging.DEBUG}

log = logging.getLogger(__name__)


HELP = with_environment(
    """Run a state worker; several share the partitions of the responses topic.

    It creates msgstate's topics when they are missing, then applies the responses until SIGTERM
    or SIGINT. With --apps it runs the apps worker instead (see `msgstate apps --help`).""",
    "MSGSTATE_KAFKA", "MSGSTATE_REDIS", "MSGSTATE_PARTITIONS", "MSGSTATE_APP_ID", "MSGSTATE_REGISTRY")


@click.command(help=HELP)
@click.option("--loglevel", "-l", default="warn", show_default=True, type=click.Choice(list(LEVELS)))
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve /metrics, /healthz, /readyz here (default MSGSTATE_METRICS_PORT; 0 = off).")
@click.option("--apps", "apps", is_flag=True,
              help="Run the apps worker instead: the installed apps on chat messages and state changes.")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help='State-type registry (instead of MSGSTATE_REGISTRY): a JSON object of name -> '
              'type or {"type", "max_values"}, e.g. {"reactions": {"type": "Set", "max_values": 20}}.')
def worker(loglevel: str, metrics_port: int | None, apps: bool, registry: Path | None) -> None:
    settings = Settings.from_env()
    if metrics_port is not None:
        settings = settings.with_(metrics_port=metrics_port)
    if registry is not None:
        try:
            settings = settings.with_(registry=parse_registry(registry.read_bytes()))
        except OSError as exc:
            raise click.ClickException(f"cannot read {registry}: {exc.strerror or exc}") from exc
        except ConfigError as exc:
            raise click.ClickException(f"{registry}: {exc}") from exc
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    probes.require_redis(settings.redis)
    ensure_topics(settings)
    if apps:
        from msgstate.workers.cli.apps import run_apps_worker

        run_apps_worker(settings, loglevel)
        return
    logs.configure(LEVELS[loglevel], settings.log_format)
    _tune_gc()
    try:
        asyncio.run(_run(settings))
    except asyncio.CancelledError:
        raise SystemExit(1) from None


def _tune_gc() -> None:
    """Collect cycles less often: a worker allocates many short-lived objects per record and
    makes few cycles, while the cyclic collector's passes took an eighth of its samples (py-spy
    on a draining worker). What start-up built is frozen out of every later pass."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _run(settings: Settings) -> None:
    state_worker = StateWorker(settings, metrics=WorkerMetrics())
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            state_worker.stop()
            loop.call_later(settings.shutdown_seconds, cut_short, "did not stop in time")
        else:
            cut_short("second signal")

    def cut_short(why: str) -> None:
        log.error("shutdown cut short (%s)", why, extra={"seconds": settings.shutdown_seconds})
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    runner = None
    if settings.metrics_port:
        try:
            runner = await serve(state_worker.metrics, state_worker.ready, settings.metrics_host,
                                 settings.metrics_port)
        except OSError as exc:
            raise ConfigError(f"MSGSTATE_METRICS_PORT={settings.metrics_port}: {exc.strerror}") from exc
    try:
        await state_worker.run()
    finally:
        if runner is not None:
            await runner.cleanup()
    log.info("stopped")
