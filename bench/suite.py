"""The whole benchmark: the worker, the ceilings, the peers, scaling and the hot message."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from msgstate.bench import baselines, kafka_io
from msgstate.bench.machine import describe
from msgstate.bench.runner import Plan, Run, Say, SystemRun, run_system
from msgstate.workers.config import Settings


@dataclass
class Figures:
    machine: str
    started: str
    plan: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    ceilings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def find(self, system: str, scenario: str = "zipf", workers: int = 1) -> Run | None:
        wanted = (system, scenario, workers)
        return next((r for r in self.runs if (r.system, r.scenario, r.workers) == wanted), None)


def run_all(base: Settings, plan: Plan, logs: Path, say: Say, step: Callable[[], None]) -> Figures:
    """Every system of the plan, one after the other; `step` is called after each."""
    figures = Figures(describe() + " at the start", time.strftime("%Y-%m-%dT%H:%M:%S%z"), asdict(plan))
    start = time.monotonic()
    rates: list[float] = []
    for scenario in plan.scenarios:
        def ceilings(run: SystemRun) -> None:
            run.redis_memory()
            topic = run.settings.topics.responses
            say("ceiling: bare aiokafka consumer")
            figures.ceilings["bare_consumer"] = baselines.bare_consumer_rate(
                run.settings, topic, kafka_io.records_in(run.settings, topic))
            say("ceiling: bare Redis pipeline writes")
            figures.ceilings["redis_hset"] = baselines.redis_write_rate(run.settings)

        worker = run_system(base, "worker", scenario, 1, plan, rates, logs, say,
                            after=ceilings if scenario == "zipf" else None, loads=plan.loads)
        figures.runs.append(worker)
        step()
        if not rates:  # every other system is offered the loads the worker was offered first
            rates = [lat.offered for lat in worker.latencies]
        if scenario != "zipf":
            continue
        step()  # the ceilings were measured with the worker's run
        for peer in plan.peers:
            figures.runs.append(run_system(base, peer, scenario, 1, plan, rates, logs, say))
            step()
        for workers in plan.workers:
            if workers != 1:
                figures.runs.append(run_system(base, "worker", scenario, workers, plan, [], logs, say))
                step()
    figures.seconds = time.monotonic() - start
    return figures
