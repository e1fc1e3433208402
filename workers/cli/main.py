"""The `msgstate` command line: a thin click layer over the services and the tools.

Commands of other distributions' packages (the benchmark's `bench`) register themselves
through the `msgstate.commands` entry-point group, so this package never imports them.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points, version

import click

from msgstate.schemas.exceptions import MsgstateError
from msgstate.streams.engine.native_engine import engine_name
from msgstate.workers.cli.analytics import analytics
from msgstate.workers.cli.apps import apps
from msgstate.workers.cli.deletions import delete, erase
from msgstate.workers.cli.http import http
from msgstate.workers.cli.publish import publish
from msgstate.workers.cli.read import summary
from msgstate.workers.cli.rebuild import rebuild
from msgstate.workers.cli.reliability import reliability
from msgstate.workers.cli.repartition import repartition
from msgstate.workers.cli.replay import replay
from msgstate.workers.cli.stack import stack
from msgstate.workers.cli.tail import tail
from msgstate.workers.cli.token import token
from msgstate.workers.cli.top import top
from msgstate.workers.cli.worker import worker
from msgstate.workers.tools.demo import demo


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"msgstate {version('msgstate')} ({engine_name()} engine)")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and which engine is active, then exit.")
def cli() -> None:
    """msgstate: typed per-user state on chat messages, from Kafka to Redis."""


for command in (stack, replay, worker, publish, summary, demo, reliability, apps, http, token,
                analytics, top, tail, repartition, rebuild, delete, erase):
    cli.add_command(command)
for entry in entry_points(group="msgstate.commands"):
    cli.add_command(entry.load(), entry.name)


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
