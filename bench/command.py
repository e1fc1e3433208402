"""`msgstate bench`: the worker against its ceilings and peers, on the local stack (bench/)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click

from msgstate.schemas.exceptions import ConfigError
from msgstate.workers.config import Settings
from msgstate.workers.services import probes
from msgstate.workers.tools import stack as local_stack

PEERS = ("naive", "table", "quix")


def _numbers(text: str, what: str, kind: type[float] | type[int]) -> list[float]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{what}: give positive numbers, not {text!r}")
    return values


@click.command()
@click.option("--scenario", type=click.Choice(["all", "zipf", "hot"]), default="all", show_default=True,
              help="zipf: Zipf-popular messages; hot: 10 % of all traffic on one message id too.")
@click.option("--workers", "workers_text", default="1,2", show_default=True,
              help="Worker counts to measure throughput with (12 partitions).")
@click.option("--loads", "loads_text", default="2500,5000,10000", show_default=True,
              help="Offered loads for the worker's latency, responses/s (on the first scenario).")
@click.option("--responses", "count", type=click.IntRange(min=100), default=40_000, show_default=True,
              help="Responses in each drain of the worker and its ceilings.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Drains per system, and latency phases per load: figures are their medians.")
@click.option("--warm-up", "warm_up", type=click.IntRange(min=0), default=2, show_default=True,
              help="Unmeasured drains per system before the first measured one.")
@click.option("--duration", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Seconds of each fixed-load latency phase (long enough that p99 tells the steady "
                   "load, not the first second after the phase before).")
@click.option("--peers", "peers_text", default=",".join(PEERS), show_default=True,
              help="Peers to run: naive, table, quix, or none.")
@click.option("--peer-responses", type=click.IntRange(min=100), default=3_000, show_default=True,
              help="Responses in each drain of a peer (they drain tens of times slower).")
@click.option("--redis-cluster", "masters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also drain with a worker on a Redis Cluster of this many masters, a replica each "
                   "(started on free ports for the run), in turns with one on the stack's Redis; 0: not.")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench/results"), show_default=True,
              help="Figures go to a new <timestamp> folder in here.")
@click.option("--quick", is_flag=True,
              help="A short run (≤ 2 min): zipf only, 1 worker, no peers, 10,000 responses, 5,000/s for 3 s.")
def bench(scenario: str, workers_text: str, loads_text: str, count: int, repeats: int, warm_up: int,
          duration: float, peers_text: str, peer_responses: int, masters: int, results_dir: Path,
          quick: bool) -> None:
    """Benchmark the installed worker on the local stack against ceilings and peers.

    Each throughput figure is the median of --repeats drains of a backlog, the worker's taken
    pair by pair against a bare pipeline that does the same reads and writes; each latency
    figure the median of --repeats phases. Uses the stack at MSGSTATE_KAFKA / MSGSTATE_REDIS
    (started, and stopped at the end, when nothing answers there). With --redis-cluster, a
    worker on the cluster and one on the stack's single Redis drain the same backlogs in turns.
    Prints tables and writes figures.json, figures.csv and a PNG plot.
    """
    try:
        from rich.console import Console
        from rich.progress import Progress

        from msgstate.bench import report
        from msgstate.bench.runner import Plan
        from msgstate.bench.suite import run_all, stages
    except ImportError as exc:
        raise ConfigError(f"msgstate bench needs the bench extra ({exc.name} is missing): "
                          "pip install 'msgstate[bench]'") from exc
    peers = [] if peers_text.strip() == "none" else [p.strip() for p in peers_text.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ConfigError(f"--peers: unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)} or none")
    plan = Plan(scenarios=["zipf", "hot"] if scenario == "all" else [scenario],
                workers=[int(n) for n in _numbers(workers_text, "--workers", int)], peers=peers,
                loads=_numbers(loads_text, "--loads", float), responses=count, duration=duration,
                timeout=90.0, repeats=repeats, warm_up=warm_up, peer_responses=peer_responses)
    if quick:
        plan.scenarios, plan.workers, plan.peers, plan.loads = ["zipf"], [1], [], [5000.0]
        plan.responses, plan.duration, plan.timeout = min(count, 10_000), min(duration, 3.0), 45.0
        plan.warm_up = min(warm_up, 1)

    base = Settings.from_env()
    if masters and base.redis_cluster:
        raise ConfigError("--redis-cluster compares with a single Redis: unset MSGSTATE_REDIS_CLUSTER")
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 180))  # the table is wide: do not fold it in logs
    started = not (probes.kafka_answers(base.kafka) and probes.redis_answers(base.redis))
    if started:
        local_stack.up(base, echo=console.print)
    folder = results_dir / time.strftime("%Y%m%d-%H%M%S")
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as cleanup:
            if masters:
                console.print(f"starting a Redis Cluster of {masters} masters, a replica each")
                plan.cluster = cleanup.enter_context(local_stack.private_redis_cluster(base, masters)).redis
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("benchmark", total=stages(plan))

                def say(text: str) -> None:
                    progress.update(task, description=text)

                figures = run_all(base, plan, logs, say, lambda: progress.advance(task))
    finally:
        if started:
            local_stack.down(base, echo=console.print)
    report.print_report(console, figures)
    for path in report.write(folder, figures):
        console.print(f"[dim]wrote {path}[/]")
