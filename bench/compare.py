"""`python -m msgstate.bench.compare RESULT_DIR...`: do several runs of `msgstate bench` agree?

For each run (a folder with figures.json): the worker's ratio to the bare pipeline, its
throughput, and its p99 at 5,000 responses/s, each a median of the run's repeats; then how far
the runs' medians of the ratio lie apart. Runs agree when the largest median of the ratio is
within AGREE of the smallest: the ratio is the figure that travels, not the absolute rates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from msgstate.bench.spread import agreement

AGREE = 0.15
LOAD = "5000"


def _text(spread: dict[str, float] | None, form: str) -> str:
    if not spread:
        return "-"
    return f"{form.format(spread['median'])} ({form.format(spread['min'])}-{form.format(spread['max'])})"


def medians(runs: dict[str, dict[str, Any]]) -> list[float]:
    """Each run's median of the worker's ratio to the bare pipeline."""
    found = [data.get("summary", {}).get("worker_per_bare_pipeline", {}).get("median")
             for data in runs.values()]
    return [m for m in found if m is not None]


def rows(runs: dict[str, dict[str, Any]]) -> list[str]:
    """A line per run and the verdict, from each run's figures.json data."""
    lines = []
    for name, data in runs.items():
        summary = data.get("summary", {})
        ratio = summary.get("worker_per_bare_pipeline") or {}
        rate = summary.get("throughput", {}).get("msgstate worker")
        p99 = summary.get("p99_ms", {}).get("msgstate worker", {}).get(LOAD)
        lines.append(f"{name}: worker / bare pipeline {_text(ratio, '{:.0%}')}, worker "
                     f"{_text(rate, '{:,.0f}')} responses/s, p99 at 5,000/s {_text(p99, '{:.0f}')} ms; "
                     f"{'; '.join(filter(None, [data.get('machine'), data.get('machine_at_end')]))}")
    if len(medians(runs)) >= 2:
        apart = agreement(medians(runs))
        verdict = "agree" if apart <= AGREE else "do not agree"
        lines.append(f"the medians of the ratio lie {apart:.0%} apart (largest over smallest): the runs "
                     f"{verdict} within {AGREE:.0%}")
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    runs = {folder: orjson.loads((Path(folder) / "figures.json").read_bytes()) for folder in argv}
    print("\n".join(rows(runs)))
    return 0 if len(medians(runs)) < 2 or agreement(medians(runs)) <= AGREE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
