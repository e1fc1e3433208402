"""`msgstate reliability SCENARIO…`: run fault scenarios on a private stack and print the figures."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.fault_run import SCENARIOS, Figures, evidence_lines, run, stack_for
from msgstate.workers.tools.soak import soak, total
from msgstate.workers.tools.stack import private_stack

ROWS = ("published", "acknowledged", "in_topic", "faults", "worker_kills", "worker_crashes", "parts",
        "parts_differing", "events_expected", "events_missing", "events_unexpected",
        "events_conflicting", "events_repeated", "rejections_expected", "rejections_missing",
        "rejections_unexpected", "rejections_repeated", "acknowledged_not_in_topic", "lost",
        "applied_twice", "seconds")
CLUSTER = (3, 3)  # the stack of `soak --cluster`


def table(figures: list[Figures]) -> Table:
    out = Table(title="fault runs: the pipeline against a replay of the responses topic")
    out.add_column("figure")
    for f in figures:
        out.add_column(f.scenario, justify="right")
    for row in ROWS:
        cells = [f.as_dict()[row] for f in figures]
        out.add_row(row, *(f"{c:.1f}" if isinstance(c, float) else f"{c:,}" for c in cells))
    out.add_row("verdict", *(_verdict(f) for f in figures))
    return out


def _verdict(figures: Figures) -> str:
    if not figures.clean:
        return "[red]NOT CLEAN[/]"
    return "[green]clean[/]" if figures.fault_met else "[red]fault not met[/]"


def _stack_name(masters: int, brokers: int) -> str:
    redis = f"a Redis Cluster of {masters} masters" if masters else "one Redis"
    kafka = f"{brokers} Kafka brokers" if brokers > 1 else "one Kafka broker"
    return f"{kafka}, {redis}"


HELP = ("Run fault SCENARIOS (default: all) on a private local stack and print what was lost or "
        "applied twice, against a replay of the responses topic, and what shows each failover was "
        "met. The failover scenarios get a cluster stack of their own (three Redis masters with a "
        "replica each, three Kafka brokers). Exit status 1 when a run is not clean or its fault "
        "was not met.\n\n\b\n"
        + "\n".join(f"{name:>14}  {text}" for name, text in SCENARIOS.items()))


@click.command(help=HELP)
@click.argument("scenarios", nargs=-1, type=click.Choice([*SCENARIOS, "all"]))
@click.option("--records", default=4000, show_default=True, help="Responses per scenario.")
@click.option("--rate", default=400.0, show_default=True, help="Responses per second offered.")
@click.option("--partitions", default=4, show_default=True, help="Partitions of the topics.")
@click.option("--seed", default=1, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="soak: how many short runs.  [default: 20]")
@click.option("--cluster", is_flag=True,
              help="soak: run on a cluster stack (three Redis masters with a replica each, three "
                   "Kafka brokers) instead of a single Kafka and Redis.")
def reliability(scenarios: tuple[str, ...], records: int, rate: float, partitions: int,
                seed: int, runs: int | None, cluster: bool) -> None:
    chosen = list(SCENARIOS) if not scenarios or "all" in scenarios else list(dict.fromkeys(scenarios))
    for name, given in (("--runs", runs is not None), ("--cluster", cluster)):
        if given and "soak" not in chosen:
            raise click.UsageError(f"{name} is an option of the soak scenario, which is not chosen")
    console = Console(stderr=True)
    logs = Path(tempfile.mkdtemp(prefix="msgstate-faults-"))
    figures: list[Figures] = []

    def need(name: str) -> tuple[int, int]:
        return CLUSTER if cluster and name == "soak" else stack_for(name)

    # One private stack per kind the chosen scenarios need, in the order they come.
    for kind in dict.fromkeys(need(name) for name in chosen):
        masters, brokers = kind
        console.print(f"[dim]starting a private stack: {_stack_name(masters, brokers)}[/]")
        with private_stack(Settings.from_env(), partitions, redis_masters=masters,
                           kafka_brokers=brokers) as settings:
            for name in (n for n in chosen if need(n) == kind):
                tag = f"faults-{name}-{int(time.time())}"
                console.print(f"[bold]{name}[/]: {SCENARIOS[name]}")
                if name == "soak":
                    figures.append(total(soak(settings, runs or 20, records, rate, logs / name, tag, seed,
                                              progress=lambda line: console.print(f"  {line}"))))
                    continue
                figures.append(run(settings.with_(topics=Topics(tag), key_prefix=tag, app_id=tag),
                                   name, records, rate, logs / name, seed=seed,
                                   progress=lambda line: console.print(f"  {line}")))
    figures.sort(key=lambda f: chosen.index(f.scenario))
    out = Console()
    out.print(table(figures))
    for f in figures:
        for line in evidence_lines(f):
            out.print(f"{f.scenario}: {line}")
    console.print(f"worker logs: {logs}")
    if not all(f.passed for f in figures):
        sys.exit(1)
