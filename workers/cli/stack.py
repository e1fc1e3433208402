"""`msgstate stack up | down | status | fetch`."""

from __future__ import annotations

import sys

import click

from msgstate.workers.config import Settings
from msgstate.workers.tools import kafka_dist
from msgstate.workers.tools import stack as local_stack


@click.group()
def stack() -> None:
    """Start, stop or show the local Kafka broker(s) and Redis server(s)."""


@stack.command()
@click.option("--redis-cluster", "redis_masters", type=click.IntRange(3, 16), default=None,
              help="Run Redis as a cluster of this many masters, each with a replica, on consecutive "
                   "ports from MSGSTATE_REDIS's (then set MSGSTATE_REDIS_CLUSTER=true).")
@click.option("--kafka-brokers", "kafka_brokers", type=click.IntRange(1, 5), default=None,
              help="Run this many Kafka brokers in one KRaft cluster: client ports from "
                   "MSGSTATE_KAFKA's port P on (P .. P+M-1), controllers after them (P+M .. P+2M-1); "
                   "replication factor min(M, 3), min.insync.replicas one less (at least 1). Then set "
                   "MSGSTATE_KAFKA to every broker and MSGSTATE_REPLICATION to that factor.")
def up(redis_masters: int | None, kafka_brokers: int | None) -> None:
    """Start what is not running; return when Kafka and Redis both answer."""
    settings = Settings.from_env()
    local_stack.up(settings, echo=click.echo, redis_masters=redis_masters or 0,
                   kafka_brokers=kafka_brokers or 0)
    exports = []
    if redis_masters and not settings.redis_cluster:
        # msgstate's clients need to know they talk to a cluster.
        exports += ["MSGSTATE_REDIS_CLUSTER=true", f"MSGSTATE_REDIS={settings.redis}"]
    brokers = local_stack.kafka_nodes(settings)
    if brokers:
        # Every broker, so that a client starts while one is down; topics replicated.
        servers = ",".join(node.address for node in brokers)
        factor = local_stack.replication_for(len(brokers))[0]
        if settings.kafka != servers:
            exports.append(f"MSGSTATE_KAFKA={servers}")
        if settings.replication != factor:
            exports.append(f"MSGSTATE_REPLICATION={factor}")
    if exports:
        click.echo("export " + " ".join(exports))


@stack.command()
def down() -> None:
    """Stop the processes `up` started (by pid file) and wait for them."""
    local_stack.down(Settings.from_env(), echo=click.echo)


@stack.command()
def status() -> None:
    """Show what runs, where, and whether it answers; exit 1 unless every process answers."""
    rows = local_stack.status(Settings.from_env())
    for row in rows:
        if row.pid:
            answer = "answers" if row.answers else "does not answer yet"
            text = f"running (pid {row.pid}), {answer}; log {row.log}"
        elif row.answers:
            text = "answers, but was not started by this stack"
        else:
            text = "stopped"
        click.echo(f"{row.name:<6} {row.address}  {text}")
    sys.exit(0 if all(r.answers for r in rows) else 1)


@stack.command()
def fetch() -> None:
    """Fetch the Kafka broker's jars from Maven Central into the stack dir (cached)."""
    libs = kafka_dist.fetch(Settings.from_env().stack_dir)
    click.echo(f"Kafka {kafka_dist.KAFKA_VERSION} jars in {libs}")
