"""The `msgstate` command line: a thin click layer over workers/ and streams/."""

from __future__ import annotations

import sys

import click

from schemas.exceptions import MsgstateError
from workers.analytics_worker import analytics
from workers.apps_command import apps
from workers.bench_command import bench
from workers.demo import demo
from workers.http_command import http
from workers.publish_command import publish
from workers.read_commands import summary
from workers.reliability_command import reliability
from workers.replay import replay
from workers.stack_command import stack
from workers.tail_command import tail
from workers.top_command import top
from workers.worker_command import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """msgstate: typed per-user state on chat messages, from Kafka to Redis."""


cli.add_command(stack)
cli.add_command(replay)
cli.add_command(worker)
cli.add_command(publish)
cli.add_command(summary)
cli.add_command(demo)
cli.add_command(reliability)
cli.add_command(apps)
cli.add_command(http)
cli.add_command(analytics)
cli.add_command(top)
cli.add_command(tail)
cli.add_command(bench)


def main() -> None:
    """Console-script entry point: msgstate errors become one line on stderr and exit 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MsgstateError as exc:
        click.echo(f"msgstate: {exc}", err=True)
        sys.exit(1)
