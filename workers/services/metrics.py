"""The state worker's Prometheus metrics, and the HTTP endpoint that serves them with health.

    GET /metrics   Prometheus text format
    GET /healthz   liveness: 200 while the event loop turns (it answers from that loop)
    GET /readyz    readiness: 200 once the worker is in its group with Kafka and Redis up

One registry per worker (not the process-global one), so tests can run several.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from msgstate.streams.rounds.processor import RoundStats

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.records = Counter("msgstate_worker_records", "Input records applied (past the fence)",
                               ["partition"], registry=registry)
        self.skipped = Counter("msgstate_worker_records_skipped",
                               "Re-delivered input records at or below the fence", registry=registry)
        self.events = Counter("msgstate_worker_events", "Summary-change events produced",
                              registry=registry)
        self.rejections = Counter("msgstate_worker_rejections", "Rejections produced, by reason",
                                  ["reason"], registry=registry)
        self.batch_size = Histogram("msgstate_worker_batch_size", "Input records per round (one fetch)",
                                    buckets=_SIZES, registry=registry)
        self.redis_seconds = Histogram("msgstate_worker_redis_seconds",
                                       "Time of a round's Redis steps", ["step"], buckets=_SECONDS,
                                       registry=registry)
        self.produce_seconds = Histogram("msgstate_worker_produce_seconds",
                                         "Time until Kafka acknowledged a batch's outputs",
                                         buckets=_SECONDS, registry=registry)
        self.retries = Counter("msgstate_worker_retries", "Redis or Kafka steps retried",
                               registry=registry)
        self.lag = Gauge("msgstate_worker_consumer_lag",
                         "Records of an assigned partition not yet applied", ["partition"],
                         registry=registry)
        self.assigned = Gauge("msgstate_worker_assigned_partitions", "Input partitions held",
                              registry=registry)
        self.rebalances = Counter("msgstate_worker_rebalances", "Partition assignments received",
                                  registry=registry)
        self.fenced = Counter("msgstate_worker_fenced",
                              "Partitions found taken by another worker", registry=registry)
        self.cache_restarts = Counter(
            "msgstate_worker_cache_restarts",
            "Times the state cache passed MSGSTATE_CACHE_ENTRIES and started again empty",
            registry=registry)
        self.failures = Counter("msgstate_worker_batch_failures",
                                "Batches that failed unexpectedly and are read again",
                                registry=registry)

    def round(self, stats: RoundStats) -> None:
        for partition, applied in stats.applied.items():
            self.records.labels(str(partition)).inc(applied)
        if stats.skipped:
            self.skipped.inc(stats.skipped)
        if stats.events:
            self.events.inc(stats.events)
        for reason in stats.rejections:
            self.rejections.labels(reason).inc()
        self.batch_size.observe(sum(stats.applied.values()) + stats.skipped)
        for step, seconds in stats.redis_seconds.items():
            self.redis_seconds.labels(step).observe(seconds)
        for seconds in stats.produce_seconds:
            self.produce_seconds.observe(seconds)
        if stats.retries:
            self.retries.inc(stats.retries)

    def assignment(self, partitions: Iterable[int]) -> None:
        """A new assignment: lag is reported for the partitions held only."""
        self.rebalances.inc()
        self.assigned.set(len(set(partitions)))
        self.lag.clear()  # the partitions given up disappear; the held ones come back


async def serve(metrics: WorkerMetrics, ready: Callable[[], Awaitable[bool]], host: str,
                port: int) -> web.AppRunner:
    """Start the endpoint on the running loop; `await runner.cleanup()` stops it."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def live(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readiness(_: web.Request) -> web.Response:
        if await ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", live)
    app.router.add_get("/readyz", readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
