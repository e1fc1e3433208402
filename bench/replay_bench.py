"""Replay benchmark: responses/s of `msgstate replay` against a bare orjson parse.

    python -m bench.replay_bench [--responses 200000] [--values 1000000] [--repeat 3]

1. Writes the generated workload (bench/workload.py) to a temporary file.
2. Times, in the same run and interleaved, on the same lines:
   - a bare `orjson.loads` of every line;
   - replay: decode + engine + MemoryStore + every summary rendered and encoded
     as a JSON line (what `msgstate replay INPUT` does);
   - replay with change events, each encoded as a JSON line (`--changes`).
   Each figure is the best of `--repeat` runs, in CPU time of this process.
   The ratio that counts is timed interleaved, batch by batch (`interleaved`),
   so that a busy machine slows both sides alike.
3. Grows a MemoryStore to `--values` live values and reports the bytes per
   live value: the deep size of every object the store holds (shared strings and
   encodings once), the dedupe memory apart.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from bench import workload
from bench.machine import describe
from schemas.codec import dumps_line
from streams.memory_store import MemoryStore
from streams.replay import BATCH, Replayer, gc_paused, records_in, replay

TARGET_RATE = 100_000  # responses/s on one core
TARGET_RATIO = 10.0  # replay time over bare-parse time


def bare_parse(lines: list[bytes]) -> None:
    loads = orjson.loads
    for line in lines:
        try:  # noqa: SIM105 - a with-block per line would weigh on the baseline being timed
            loads(line)
        except orjson.JSONDecodeError:
            pass


def full_replay(lines: list[bytes]) -> None:
    store = replay(lines)
    for summary in store.summaries():
        dumps_line(summary)


def replay_with_events(lines: list[bytes]) -> None:
    out: list[bytes] = []

    def emit(record: dict[str, Any]) -> None:
        out.append(dumps_line(record))

    store = replay(lines, on_event=emit, on_rejection=emit)
    for summary in store.summaries():
        dumps_line(summary)


def interleaved(lines: list[bytes], batch: int = BATCH) -> tuple[float, float]:
    """(bare-parse seconds, replay seconds), timed batch by batch in turn.

    Both see the same moments of machine load, so their ratio holds on a busy
    machine too; the order within each pair alternates so neither always finds
    the lines in the cache.
    """
    replayer = Replayer()
    clock = time.process_time
    parse_time = replay_time = 0.0
    gc.collect()
    with gc_paused():
        for turn, start in enumerate(range(0, len(lines), batch)):
            chunk = lines[start : start + batch]
            if turn % 2:
                t0 = clock()
                bare_parse(chunk)
                t1 = clock()
                replayer.feed(chunk)
                t2 = clock()
                parse_time += t1 - t0
                replay_time += t2 - t1
            else:
                t0 = clock()
                replayer.feed(chunk)
                t1 = clock()
                bare_parse(chunk)
                t2 = clock()
                replay_time += t1 - t0
                parse_time += t2 - t1
        t0 = clock()
        for summary in replayer.store.summaries():
            dumps_line(summary)
        replay_time += clock() - t0
    return parse_time, replay_time


def cpu_seconds(run: Callable[[list[bytes]], None], lines: list[bytes]) -> float:
    gc.collect()
    start = time.process_time()
    run(lines)
    return time.process_time() - start


# -- memory ---------------------------------------------------------------------------------


def deep_size(root: Any) -> int:
    """Bytes of every object reachable from `root` through containers, each counted once."""
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, slot) for slot in obj.__slots__ if hasattr(obj, slot))
    return total


def grow_store(target: int, seed: int) -> tuple[MemoryStore, int]:
    """A store holding at least `target` live values, and how many responses it took."""
    store = MemoryStore()
    fed = 0
    step = 100_000
    source: Iterator[bytes] = workload.responses(
        10**9, messages=max(1000, target // 40), identities=max(50_000, target // 4), seed=seed
    )
    while store.live_values() < target:
        chunk = [next(source) for _ in range(step)]
        replay(chunk, store=store)
        fed += step
    return store, fed


# -- report ---------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "[green]met[/]" if met else "[red]missed[/]"


@click.command()
@click.option("--responses", "count", default=200_000, show_default=True, help="Responses to replay.")
@click.option("--values", default=1_000_000, show_default=True,
              help="Live values for the memory figure (0: skip).")
@click.option("--repeat", default=3, show_default=True, help="Runs of each timing; the best counts.")
@click.option("--seed", default=7, show_default=True)
@click.option("--profile", is_flag=True, help="Also print a cProfile of one replay.")
def main(count: int, values: int, repeat: int, seed: int, profile: bool) -> None:
    """Benchmark `msgstate replay` (see the module docstring)."""
    console = Console()
    console.print(describe())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.jsonl"
        size = workload.write(path, count, seed=seed)
        lines = records_in(path.read_bytes())
    console.print(f"workload: {len(lines):,} responses, {size / 1e6:.1f} MB, seed {seed}")

    runs: dict[str, list[float]] = {"parse": [], "replay": [], "events": []}
    pairs: list[tuple[float, float]] = []
    for _ in range(repeat):
        runs["parse"].append(cpu_seconds(bare_parse, lines))
        runs["replay"].append(cpu_seconds(full_replay, lines))
        runs["events"].append(cpu_seconds(replay_with_events, lines))
        pairs.append(interleaved(lines))
    best = {name: min(times) for name, times in runs.items()}
    pair_parse, pair_replay = min(pairs, key=lambda pair: pair[1] / pair[0])

    table = Table(title=f"replay of {len(lines):,} responses (best of {repeat}, CPU seconds)")
    for column in ("measure", "seconds", "responses/s", "× bare parse"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    labels = {
        "parse": "bare orjson parse",
        "replay": "replay: decode + engine + summaries",
        "events": "replay with change events (--changes)",
    }
    for name, label in labels.items():
        seconds = best[name]
        table.add_row(
            label,
            f"{seconds:.3f}",
            f"{len(lines) / seconds:,.0f}",
            f"{seconds / best['parse']:.1f}",
        )
    table.add_row(
        "interleaved, batch by batch: bare parse",
        f"{pair_parse:.3f}",
        f"{len(lines) / pair_parse:,.0f}",
        "1.0",
    )
    table.add_row(
        "interleaved, batch by batch: replay",
        f"{pair_replay:.3f}",
        f"{len(lines) / pair_replay:,.0f}",
        f"{pair_replay / pair_parse:.1f}",
    )
    console.print(table)
    rate = len(lines) / best["replay"]
    apart = best["replay"] / best["parse"]
    together = pair_replay / pair_parse
    console.print(f"target ≥{TARGET_RATE:,} responses/s: {rate:,.0f} {_verdict(rate >= TARGET_RATE)}")
    console.print(
        f"target within {TARGET_RATIO:.0f}× of bare parse: {apart:.1f}× timed apart "
        f"{_verdict(apart <= TARGET_RATIO)}, {together:.1f}× interleaved "
        f"{_verdict(together <= TARGET_RATIO)}"
    )

    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(full_replay, lines)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    if values:
        store, fed = grow_store(values, seed)
        live = store.live_values()
        everything = deep_size(store)
        store.forget_response_ids()
        state = deep_size(store)
        memory = Table(title=f"memory at {live:,} live values ({fed:,} responses fed)")
        memory.add_column("measure")
        memory.add_column("bytes", justify="right")
        memory.add_column("per", justify="right")
        memory.add_row("state (deep size)", f"{state:,}", f"{state / live:.1f} per live value")
        dedupe = everything - state
        memory.add_row("dedupe memory", f"{dedupe:,}", f"{dedupe / fed:.1f} per response id")
        console.print(memory)


if __name__ == "__main__":
    main()
