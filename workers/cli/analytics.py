"""`msgstate analytics`: run the analytics consumer."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import click
from prometheus_client import start_http_server

from msgstate.workers.cli.env_help import with_environment
from msgstate.workers.config import Settings
from msgstate.workers.logs import configure as configure_logs
from msgstate.workers.services import probes
from msgstate.workers.services.analytics_worker import AnalyticsWorker
from msgstate.workers.topics import ensure_topics

log = logging.getLogger(__name__)


HELP = with_environment(
    """Run the analytics consumer: per-minute counts of changes by state, value and message.

    It reads the summary-change events in a consumer group of its own (the state workers' group
    with -analytics appended) and keeps the counts in Redis, where `msgstate top` reads them. It
    runs until SIGTERM or SIGINT.""",
    "MSGSTATE_KAFKA", "MSGSTATE_REDIS", "MSGSTATE_ANALYTICS_RETENTION")


@click.command("analytics", help=HELP)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9102, show_default=True,
              envvar="MSGSTATE_ANALYTICS_METRICS_PORT", help="Prometheus endpoint port; 0 for none.")
def analytics(metrics_port: int) -> None:
    settings = Settings.from_env()
    probes.require_kafka(settings.kafka, options=settings.kafka_security.kafka_python())
    probes.require_redis(settings.redis)
    ensure_topics(settings, [settings.topics.summary_changes])
    configure_logs()
    if metrics_port:
        start_http_server(metrics_port)
    worker = AnalyticsWorker(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("counting", extra={"topic": settings.topics.summary_changes,
                                "retention_s": settings.analytics_retention})
    worker.run()
