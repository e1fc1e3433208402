"""The chaos soak: many short fault runs with worker SIGKILLs, and their totals.

Each run has topics and keys of its own, a workload of its own (the seed moves on by one), and
kills one of its two workers at three random moments (fault_run's `soak` plan). A repeat that
only rare timings produce (a worker killed between persisting a round and Kafka acknowledging
its outputs) shows in the totals of many runs, where one run would likely miss it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.fault_run import Figures, run


def soak(settings: Settings, runs: int, records: int, rate: float, logs: Path, tag: str,
         seed: int = 1, progress: Callable[[str], None] = lambda _line: None) -> list[Figures]:
    """`runs` soak runs on `settings`' stack, one after the other; the figures of each."""
    figures: list[Figures] = []
    for i in range(1, runs + 1):
        name = f"{tag}-{i}"
        done = run(settings.with_(topics=Topics(name), key_prefix=name, app_id=name), "soak",
                   records, rate, logs / f"run-{i}", seed=seed + i - 1)
        figures.append(done)
        progress(f"run {i}/{runs}: {'clean' if done.clean else 'NOT CLEAN'}, "
                 f"{done.worker_kills} of {done.evidence.get('kills_planned')} kills, "
                 f"{done.events_repeated} events and {done.rejections_repeated} rejections "
                 f"repeated, {done.seconds:.0f} s")
    return figures


def total(figures: list[Figures]) -> Figures:
    """The runs' figures added up (counts and seconds; evidence counts too, but the most workers
    at once is the most of any run); fault met when it was in every run."""
    sums: dict[str, Any] = {}
    for f in dataclasses.fields(Figures):
        values = [getattr(one, f.name) for one in figures]
        if f.name == "scenario":
            sums[f.name] = "soak"
        elif f.name == "evidence":
            keys = dict.fromkeys(k for one in figures for k, v in one.evidence.items()
                                 if isinstance(v, int))
            sums[f.name] = {k: sum(one.evidence.get(k, 0) for one in figures) for k in keys}
            sums[f.name]["workers_at_most"] = max(one.evidence.get("workers_at_most", 0) for one in figures)
            sums[f.name]["runs"] = len(figures)
            sums[f.name]["runs_not_clean"] = sum(1 for one in figures if not one.clean)
        elif f.name == "fault_met":
            sums[f.name] = all(values)
        else:
            sums[f.name] = sum(values)
    return Figures(**sums)
