"""Replay benchmark: responses/s of `msgstate replay` against a bare orjson parse.

    python -m bench.replay_bench [--responses 200000] [--values 1000000] [--repeat 3]
                                 [--object-share 0.05]

1. Writes the generated workload (bench/workload.py) to a temporary file.
2. Times, in the same run, on the same lines:
   - a bare `orjson.loads` of every line;
   - replay with the compiled engine (the default of `msgstate replay`): decode + rules +
     store + every summary rendered as a JSON line;
   - the same with change events and rejections as JSON lines (`--changes`, `--rejections`);
   - both again with the Python reference engine (decode + Engine + MemoryStore).
   Each figure is the best of `--repeat` runs, in CPU time of this process.
   The ratio that counts is timed interleaved, batch by batch (`interleaved`),
   so that a busy machine slows both sides alike.
3. Grows the compiled engine's store to `--values` live values and reports the bytes per
   live value (its allocations, counted by the extension's allocator), the dedupe memory
   apart; `--python-memory` adds the deep size of a MemoryStore grown alike.
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

from msgstate.bench.machine import describe
from msgstate.schemas.codec import dumps_line
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.engine.native_engine import NativeEngine, heap_bytes
from msgstate.streams.engine.replay import BATCH, Replayer, gc_paused, records_in, replay
from msgstate.workers.tools import workload

TARGET_RATE = 100_000  # responses/s on one core
TARGET_RATIO = 10.0  # replay time over bare-parse time


def bare_parse(lines: list[bytes]) -> None:
    loads = orjson.loads
    for line in lines:
        try:  # noqa: SIM105 - a with-block per line would weigh on the baseline being timed
            loads(line)
        except orjson.JSONDecodeError:
            pass


def native_replay(lines: list[bytes]) -> None:
    engine = NativeEngine(events=False)
    for start in range(0, len(lines), BATCH):
        engine.feed(lines[start : start + BATCH])
    engine.summary_lines()


def native_with_events(lines: list[bytes]) -> None:
    engine = NativeEngine()
    out: list[bytes] = []
    for start in range(0, len(lines), BATCH):
        events, rejections = engine.feed(lines[start : start + BATCH])
        out += events
        out += rejections
    engine.summary_lines()


def python_replay(lines: list[bytes]) -> None:
    store = replay(lines)
    for summary in store.summaries():
        dumps_line(summary)


def python_with_events(lines: list[bytes]) -> None:
    out: list[bytes] = []

    def emit(record: dict[str, Any]) -> None:
        out.append(dumps_line(record))

    store = replay(lines, on_event=emit, on_rejection=emit)
    for summary in store.summaries():
        dumps_line(summary)


class _Python:
    """The Python engine behind the compiled engine's `feed` / `summary_lines`."""

    def __init__(self) -> None:
        self._replayer = Replayer()

    def feed(self, chunk: list[bytes]) -> Any:
        self._replayer.feed(chunk)

    def summary_lines(self) -> list[bytes]:
        return [dumps_line(summary) for summary in self._replayer.store.summaries()]


def interleaved(lines: list[bytes], engine: str, batch: int = BATCH) -> tuple[float, float]:
    """(bare-parse seconds, replay seconds), timed batch by batch in turn.

    Both see the same moments of machine load, so their ratio holds on a busy
    machine too; the order within each pair alternates so neither always finds
    the lines in the cache.
    """
    replayer: NativeEngine | _Python = (
        NativeEngine(events=False) if engine == "native" else _Python()
    )
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
        replayer.summary_lines()
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


def _source(target: int, seed: int) -> Iterator[bytes]:
    return workload.responses(
        10**9, messages=max(1000, target // 40), identities=max(50_000, target // 4), seed=seed
    )


def grow_store(target: int, seed: int) -> tuple[MemoryStore, int]:
    """A MemoryStore holding at least `target` live values, and how many responses it took."""
    store = MemoryStore()
    fed = 0
    step = 100_000
    source = _source(target, seed)
    while store.live_values() < target:
        chunk = [next(source) for _ in range(step)]
        replay(chunk, store=store)
        fed += step
    return store, fed


def grow_native(target: int, seed: int) -> tuple[NativeEngine, int]:
    """A compiled engine holding at least `target` live values, and the responses it took."""
    engine = NativeEngine(events=False)
    fed = 0
    step = 100_000
    source = _source(target, seed)
    while engine.live_values() < target:
        chunk = [next(source) for _ in range(step)]
        for start in range(0, step, BATCH):
            engine.feed(chunk[start : start + BATCH])
        fed += step
    return engine, fed


# -- report ---------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "[green]met[/]" if met else "[red]missed[/]"


@click.command()
@click.option("--responses", "count", default=200_000, show_default=True, help="Responses to replay.")
@click.option("--values", default=1_000_000, show_default=True,
              help="Live values for the memory figure (0: skip).")
@click.option("--repeat", default=3, show_default=True, help="Runs of each timing; the best counts.")
@click.option("--seed", default=7, show_default=True)
@click.option("--object-share", default=0.0, show_default=True,
              help="Share of changes whose value is an object (SPEC v1.1).")
@click.option("--profile", is_flag=True, help="Also print a cProfile of one Python-engine replay.")
@click.option("--python-memory", is_flag=True, help="Also grow a MemoryStore for the memory figure.")
def main(count: int, values: int, repeat: int, seed: int, object_share: float, profile: bool,
         python_memory: bool) -> None:
    """Benchmark `msgstate replay` (see the module docstring)."""
    console = Console()
    console.print(describe())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.jsonl"
        size = workload.write(path, count, seed=seed, object_share=object_share)
        lines = records_in(path.read_bytes())
    console.print(f"workload: {len(lines):,} responses, {size / 1e6:.1f} MB, seed {seed}, "
                  f"object values {object_share:.0%}")

    runs: dict[str, Callable[[list[bytes]], None]] = {
        "parse": bare_parse,
        "native": native_replay,
        "native_events": native_with_events,
        "python": python_replay,
        "python_events": python_with_events,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    pairs: dict[str, list[tuple[float, float]]] = {"native": [], "python": []}
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(cpu_seconds(run, lines))
        for engine, engine_pairs in pairs.items():
            engine_pairs.append(interleaved(lines, engine))
    best = {name: min(seconds) for name, seconds in times.items()}
    paired = {
        engine: min(engine_pairs, key=lambda pair: pair[1] / pair[0])
        for engine, engine_pairs in pairs.items()
    }

    table = Table(title=f"replay of {len(lines):,} responses (best of {repeat}, CPU seconds)")
    for column in ("measure", "seconds", "responses/s", "× bare parse"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    labels = {
        "parse": "bare orjson parse",
        "native": "replay, compiled engine: decode + rules + summaries",
        "native_events": "  the same with events and rejections (--changes)",
        "python": "replay, Python engine: decode + rules + summaries",
        "python_events": "  the same with events and rejections (--changes)",
    }
    for name, label in labels.items():
        seconds = best[name]
        table.add_row(
            label,
            f"{seconds:.3f}",
            f"{len(lines) / seconds:,.0f}",
            f"{seconds / best['parse']:.1f}",
        )
    for engine, (pair_parse, pair_replay) in paired.items():
        table.add_row(
            f"interleaved, batch by batch ({engine}): bare parse",
            f"{pair_parse:.3f}",
            f"{len(lines) / pair_parse:,.0f}",
            "1.0",
        )
        table.add_row(
            f"interleaved, batch by batch ({engine}): replay",
            f"{pair_replay:.3f}",
            f"{len(lines) / pair_replay:,.0f}",
            f"{pair_replay / pair_parse:.1f}",
        )
    console.print(table)
    rate = len(lines) / best["native"]
    apart = best["native"] / best["parse"]
    together = paired["native"][1] / paired["native"][0]
    console.print(
        f"target ≥{TARGET_RATE:,} responses/s (compiled engine): {rate:,.0f} "
        f"{_verdict(rate >= TARGET_RATE)}"
    )
    console.print(
        f"target within {TARGET_RATIO:.0f}× of bare parse: {apart:.1f}× timed apart "
        f"{_verdict(apart <= TARGET_RATIO)}, {together:.1f}× interleaved "
        f"{_verdict(together <= TARGET_RATIO)}"
    )
    console.print(
        f"compiled engine against the Python engine: {best['python'] / best['native']:.1f}× "
        f"faster ({best['python_events'] / best['native_events']:.1f}× with events)"
    )

    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(python_replay, lines)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    if values:
        memory = Table(title=f"memory at {values:,} live values or more")
        for column in ("measure", "bytes", "per"):
            memory.add_column(column, justify="left" if column == "measure" else "right")
        before = heap_bytes()
        engine, fed = grow_native(values, seed)
        live = engine.live_values()
        everything = heap_bytes() - before
        engine.forget_response_ids()
        state = heap_bytes() - before
        memory.add_row(
            f"compiled engine: state ({live:,} values, {fed:,} responses)",
            f"{state:,}",
            f"{state / live:.1f} per live value",
        )
        memory.add_row(
            "compiled engine: dedupe memory",
            f"{everything - state:,}",
            f"{(everything - state) / fed:.1f} per response id",
        )
        del engine
        if python_memory:
            store, fed = grow_store(values, seed)
            live = store.live_values()
            everything = deep_size(store)
            store.forget_response_ids()
            state = deep_size(store)
            memory.add_row(
                f"MemoryStore: state, deep size ({live:,} values)",
                f"{state:,}",
                f"{state / live:.1f} per live value",
            )
            memory.add_row(
                "MemoryStore: dedupe memory",
                f"{everything - state:,}",
                f"{(everything - state) / fed:.1f} per response id",
            )
        console.print(memory)


if __name__ == "__main__":
    main()
