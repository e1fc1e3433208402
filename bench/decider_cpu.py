"""A state worker's CPU per response in-process: its `RoundProcessor` over the memory store, the
outputs dropped (no Kafka, no Redis), so that the decider's cost shows.

    python -m msgstate.bench.decider_cpu [--engine native] [--registry JSON] [--responses 100000]
        [--messages 2000] [--round 500] [--repeat 3]

Applies the sample workload (2 % bad records, seed 11) on one partition in rounds of --round
records, the changelog on, and prints the process's CPU per response, and that CPU without the
memory store's reads and writes (their time, measured around them), for each repeat. E.g.
--registry '{"reactions": {"type": "Set", "max_values": 20}}' for a capped registry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import click

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.limits import DEDUPE_WINDOW
from msgstate.schemas.registry import parse_registry
from msgstate.streams.engine.engine import Engine
from msgstate.streams.rounds.changelog import Logged
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.processor import InRecord, OutRecord, RoundProcessor
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import Keys
from msgstate.streams.storage.memory import MemoryRoundStore
from msgstate.workers.cli.publish import record_key
from msgstate.workers.tools.workload import responses


async def _dropped(records: Sequence[OutRecord], logged: Logged) -> asyncio.Future[Any]:
    """A sink that Kafka acknowledges at once."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


async def _run(decider: Decider, records: Sequence[InRecord], size: int) -> tuple[float, float]:
    """(CPU seconds, seconds in the store's calls) to apply `records` in rounds of `size`."""
    processor = RoundProcessor(decider, MemoryRoundStore(Keys("bench", partitions=1)), _dropped,
                               "bench")
    in_store = 0.0
    started = time.process_time()
    for start in range(0, len(records), size):
        stats = await processor.process({0: records[start:start + size]})
        in_store += sum(stats.redis_seconds.values())
    return time.process_time() - started, in_store


@click.command()
@click.option("--engine", type=click.Choice(["native", "python"]), default="native",
              show_default=True)
@click.option("--registry", default="{}", show_default=True,
              help="The state workers' registry, as JSON (MSGSTATE_REGISTRY's form).")
@click.option("--responses", "count", default=100_000, show_default=True)
@click.option("--messages", default=2_000, show_default=True)
@click.option("--round", "size", default=500, show_default=True, help="Records per round.")
@click.option("--repeat", default=3, show_default=True)
def main(engine: str, registry: str, count: int, messages: int, size: int, repeat: int) -> None:
    try:
        types: dict[str, Any] = dict(parse_registry(registry))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--registry") from None
    values = list(responses(count, messages=messages, bad_share=0.02, seed=11))
    records = [InRecord(offset, value, True, record_key(value)) for offset, value in enumerate(values)]
    for _ in range(repeat):
        decider: Decider = (CompiledDecider(types) if engine == "native"
                            else PythonDecider(Engine(types), window=DEDUPE_WINDOW))
        cpu, in_store = asyncio.run(_run(decider, records, size))
        click.echo(f"{engine}: {cpu / count * 1e6:.1f} µs CPU per response, "
                   f"{(cpu - in_store) / count * 1e6:.1f} µs without the memory store's calls")


if __name__ == "__main__":
    main()
