"""Erasure benchmark: erasing an identity that holds values in many messages, in replay.

    python -m bench.erasure_bench [--messages 10000] [--bystanders 100000] [--repeat 3]

Builds a Python-engine replay store (decode + Engine + MemoryStore) where one identity
holds a Set member and an LWW value in each of `--messages` messages, among other
identities' values there, and `--bystanders` more messages it never touched; then times
the one `erase_identity` record (SPEC section 3a), with its events built. The erasure reads
the identity's index, so its time follows what the identity holds, not the store's size:
the run with ten times the bystanders shows it.
"""

from __future__ import annotations

import time

import click
import orjson
from rich.console import Console
from rich.table import Table

from msgstate.bench.machine import describe
from msgstate.streams.engine.replay import Replayer, gc_paused

ERASED = "layer:///identities/FrodoTheDodo"
OTHERS = [f"layer:///identities/u{n}" for n in range(5)]


def _response(rid: str, message: str, identity: str, value: str) -> bytes:
    return orjson.dumps({
        "id": rid, "message_id": message, "identity_id": identity,
        "changes": [{"operation": "add", "type": "Set", "name": "reactions", "value": value},
                    {"operation": "add", "type": "LWW", "name": "pick", "value": {"v": value}}],
    })


def workload(messages: int, bystanders: int) -> list[bytes]:
    lines = []
    for n in range(messages):
        message = f"layer:///messages/held-{n}"
        lines.append(_response(f"r-{n}", message, ERASED, "👍"))
        for k, other in enumerate(OTHERS):
            lines.append(_response(f"r-{n}-{k}", message, other, "🎉" if k % 2 else "👍"))
    for n in range(bystanders):
        lines.append(_response(f"b-{n}", f"layer:///messages/other-{n}", OTHERS[n % 5], "x"))
    return lines


def erase_once(messages: int, bystanders: int) -> tuple[float, int, int]:
    """(seconds of the erasure alone, events it made, values the store held)."""
    events: list[dict[str, object]] = []
    replayer = Replayer(on_event=events.append)
    lines = workload(messages, bystanders)
    with gc_paused():
        for start in range(0, len(lines), 1024):
            replayer.feed(lines[start:start + 1024])
        held = replayer.store.live_values()
        events.clear()
        erasure = orjson.dumps({"kind": "erase_identity", "id": "e-1", "identity_id": ERASED})
        began = time.process_time()
        replayer.feed([erasure])
        seconds = time.process_time() - began
    if replayer.store.identity_index(ERASED):
        raise SystemExit("the erasure left values behind")
    return seconds, len(events), held


@click.command()
@click.option("--messages", default=10_000, show_default=True,
              help="Messages where the erased identity holds values.")
@click.option("--bystanders", default=100_000, show_default=True,
              help="Messages it never touched.")
@click.option("--repeat", default=3, show_default=True, help="Runs; the best is shown.")
def main(messages: int, bystanders: int, repeat: int) -> None:
    """Time the erasure of one identity (see the module docstring)."""
    console = Console()
    console.print(describe())
    table = Table(title=f"erasing an identity that holds values in {messages:,} messages "
                        f"(Python engine, best of {repeat})")
    for column in ("messages in the store", "values held", "events", "erasure, CPU seconds"):
        table.add_column(column, justify="right")
    for others in (bystanders, bystanders * 10):
        runs = [erase_once(messages, others) for _ in range(repeat)]
        seconds = min(run[0] for run in runs)
        _, events, held = runs[0]
        table.add_row(f"{messages + others:,}", f"{held:,}", f"{events:,}", f"{seconds:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
