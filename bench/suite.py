"""The whole benchmark: the worker beside its ceilings, then the hot message, the peers, scaling."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from msgstate.bench.machine import describe
from msgstate.bench.procs import process_age, stack_pids
from msgstate.bench.runner import SATURATED, Batch, BenchError, Latency, Plan, Run, Say, Session, System
from msgstate.bench.spread import Spread, paired
from msgstate.workers.config import Settings

T = TypeVar("T")
STACK_SETTLE = 120.0  # seconds a started broker is given before anything is measured


@dataclass
class Figures:
    machine: str
    started: str
    plan: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0
    machine_at_end: str = ""
    broker_age: float = 0.0  # seconds since the broker started, at the start of the run
    stack_warm_up: float = 0.0  # seconds of drains before the first session, for a young broker

    def find(self, system: str, scenario: str = "zipf", workers: int = 1, store: str = "") -> Run | None:
        wanted = (system, scenario, workers, store)
        return next((r for r in self.runs if (r.system, r.scenario, r.workers, r.store) == wanted), None)

    def on_cluster(self) -> list[float]:
        """The worker's drains on the cluster over its drains on the single Redis, pair by pair."""
        single, cluster = self.find("worker", store="redis"), self.find("worker", store="cluster")
        return [] if single is None or cluster is None else paired(cluster.rates(), single.rates())

    def ratios(self, ceiling: str, system: str = "worker") -> list[float]:
        """The system's drains over the ceiling's, repeat by repeat (the same session)."""
        run, top = self.find(system), self.find(ceiling)
        return [] if run is None or top is None else paired(run.rates(), top.rates())

    def ratio(self, ceiling: str, system: str = "worker") -> Spread | None:
        return Spread.of(self.ratios(ceiling, system))


def turns(items: Sequence[T], repeat: int) -> list[T]:
    """Who goes first changes from one repeat to the next: a machine that drifts within a
    repeat then favours each system as often."""
    shift = repeat % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


@dataclass
class Part:
    """One session: its systems (the first is the one its latency is of) and what it measures.

    Each session starts from empty topics and keys, and the worker's figures depend on the
    state it holds: past its cache's million entries (about 450,000 responses of this
    workload) it starts the cache again empty, and each response then costs the worker and
    Redis about twice the CPU. So the drains, and each repeat of the worker's latency phases,
    run in sessions of their own, each well under that and each from the same state.
    """

    scenario: str
    systems: list[tuple[str, int]]  # (system, processes)
    responses: int
    drains: bool = True
    latency_rounds: int = 0  # rounds of latency phases, one phase per load each
    bare_consumer: bool = False
    stores: list[str] = field(default_factory=list)  # each system's Redis (Session.stores); "" for all

    @property
    def label(self) -> str:
        name, workers = self.systems[0]
        extra = f" ×{workers}" if workers > 1 else ""
        where = ", single Redis against the cluster" if self.stores else ""
        return f"{name}{extra}, {self.scenario}{where}"


def parts(plan: Plan) -> list[Part]:
    found = []
    rounds = plan.repeats if plan.loads else 0
    for n, scenario in enumerate(plan.scenarios):
        systems = [("worker", 1), ("bare_pipeline", 1)] if scenario == "zipf" else [("worker", 1)]
        found.append(Part(scenario, systems, plan.responses, bare_consumer=scenario == "zipf"))
        # The latency of the first scenario only: a minute a round, and the hot message's
        # target is its throughput (`--scenario hot` measures its latency).
        found += [Part(scenario, [("worker", 1)], plan.responses, drains=False, latency_rounds=1)
                  for _ in range(rounds if n == 0 else 0)]
    if "zipf" in plan.scenarios:
        # Drains only: the peers drain a few thousand responses/s at most, and a peer offered
        # about what it keeps up with (quix at 2,500/s) only grew a backlog, for minutes.
        found += [Part("zipf", [(peer, 1)], plan.peer_responses) for peer in plan.peers]
        found += [Part("zipf", [("worker", n)], plan.responses) for n in plan.workers if n != 1]
    if plan.cluster:
        # A worker on the single Redis and one on the cluster, on the same records in turns.
        found.append(Part("zipf", [("worker", 1), ("worker", 1)], plan.responses,
                          stores=["redis", "cluster"]))
    return found


def stages(plan: Plan) -> int:
    """How many steps a plan has, for the progress bar."""
    return sum(1 + plan.warm_up + (plan.repeats if part.drains else 0)
               + part.latency_rounds * len(plan.loads) for part in parts(plan))


def measure(base: Settings, plan: Plan, part: Part, logs: Path, say: Say, step: Callable[[], None],
            into: Run | None = None) -> list[Run]:
    """Start, warm up, drain `repeats` times in turns, then the latencies of the first system.

    `into`: the run of the first system from an earlier session (its drains tell which loads it
    can be offered), where this session's latencies go.
    """
    session = Session(base, part.scenario, logs, plan.timeout, say, plan.cluster)
    runs: list[Run] = []
    try:
        systems = [session.add(name, workers, into if n == 0 else None,
                               part.stores[n] if part.stores else "")
                   for n, (name, workers) in enumerate(part.systems)]
        runs = [s.run for s in systems]
        say(f"{part.label}: starting")
        session.start()
        step()
        began = time.monotonic()
        for k in range(plan.warm_up):
            say(f"{part.label}: warm-up drain {k + 1} of {plan.warm_up}, {part.responses:,} responses")
            _drains(session, systems, part.responses, k, "warm-up" if part.drains else "none")
            step()
        if part.drains:
            for run in runs:
                run.warm_up_seconds = time.monotonic() - began
            _measured_drains(session, systems, plan, part, runs, say, step)
        main = systems[0]
        for other in systems[1:]:
            session.remove(other)  # the latencies are the first system's alone
        if part.latency_rounds:
            _latencies(session, main, plan, part.latency_rounds, say, step)
        if part.drains and main.name == "worker" and main.run.workers == 1:
            session.redis_memory(main)
        if part.stores:
            for system in systems:  # stopped first: a running worker's outbox holds its last round
                if system in session.systems:
                    session.remove(system)
                session.release(system)
    except BenchError as exc:
        if runs:
            runs[0].note = "; ".join(filter(None, [runs[0].note, str(exc).splitlines()[0]]))
    finally:
        session.close()
    return [] if into is not None else runs


def _measured_drains(session: Session, systems: list[System], plan: Plan, part: Part, runs: list[Run],
                     say: Say, step: Callable[[], None]) -> None:
    ceiling = None
    if part.bare_consumer:
        ceiling = Run("bare_consumer", part.scenario, responses=part.responses)
        runs.append(ceiling)
    for i in range(plan.repeats):
        say(f"{part.label}: drain {i + 1} of {plan.repeats}, {part.responses:,} responses")
        batch = _drains(session, systems, part.responses, i, "drain")
        if ceiling is not None:
            ceiling.drains.append(session.bare_consumer(batch))
        step()


def _drains(session: Session, systems: list[System], count: int, repeat: int,
            keep: Literal["drain", "warm-up", "none"]) -> Batch:
    """One backlog, drained by each system in turn: kept as a measured drain, as a warm-up
    rate, or not at all (the warm-up of a latency session)."""
    batch = session.lay(count)
    for system in turns(systems, repeat):
        drain = session.drain(system, batch)
        if keep == "drain":
            system.run.drains.append(drain)
        elif keep == "warm-up":
            system.run.warm_up.append(drain.rate)
    return batch


def _latencies(session: Session, main: System, plan: Plan, rounds: int, say: Say,
               step: Callable[[], None]) -> None:
    """`rounds` rounds of a phase at each load; the samples join those of earlier sessions."""
    run = main.run
    own = run.throughput
    unfinished = any(d.rate is None or d.note.startswith("only") for d in run.drains)
    known = {lat.offered: lat for lat in run.latencies}
    latencies = [known.get(rate) or Latency(rate) for rate in plan.loads]
    for lat in latencies:
        if unfinished:
            lat.note = "not run: a drain did not finish"
        elif own is None or lat.offered > SATURATED * own.median:
            lat.note = "over capacity"
    for _ in range(rounds):
        for lat in latencies:
            if not lat.note:
                say(f"{main.name}, {session.scenario}: latency at {lat.offered:,.0f} responses/s, "
                    f"{len(lat.samples) + 1} of {plan.repeats}")
                lat.samples.append(session.latency(main, lat.offered, plan.duration))
            step()
    run.latencies = latencies


def settle_stack(base: Settings, plan: Plan, logs: Path, say: Say) -> tuple[float, float]:
    """Drains through a throwaway worker and bare pipeline until the broker is STACK_SETTLE
    seconds old; returns (the broker's age before, seconds spent), (age, 0) for an older one.

    A freshly started broker ran slow here for its first 80-110 s, in G1 garbage collection
    (0.4-0.6 CPU s in each worker drain of 40,000, against 0.1-0.2 later). The session's own
    state does not matter: it is dropped."""
    age = process_age(stack_pids(base)["broker"])
    if age is None or age >= STACK_SETTLE:
        return age or 0.0, 0.0
    began = time.monotonic()
    session = Session(base, "zipf", logs, plan.timeout, say)
    try:
        systems = [session.add("worker"), session.add("bare_pipeline")]
        session.start()
        n = 0
        while (process_age(stack_pids(base)["broker"]) or STACK_SETTLE) < STACK_SETTLE:
            say(f"stack warm-up: the broker started {age:.0f} s ago, drains until it is "
                f"{STACK_SETTLE:.0f} s old")
            _drains(session, systems, plan.responses, n, "none")
            n += 1
    except BenchError:
        pass  # the measured sessions say what fails
    finally:
        session.close()
    return age, time.monotonic() - began


def run_all(base: Settings, plan: Plan, logs: Path, say: Say, step: Callable[[], None]) -> Figures:
    """Every part of the plan, one after the other; `step` is called after each stage."""
    figures = Figures(describe() + " at the start", time.strftime("%Y-%m-%dT%H:%M:%S%z"), asdict(plan))
    start = time.monotonic()
    if plan.warm_up:
        figures.broker_age, figures.stack_warm_up = settle_stack(base, plan, logs, say)
    for part in parts(plan):
        name, workers = part.systems[0]
        into = None if part.drains else figures.find(name, part.scenario, workers)
        figures.runs += measure(base, plan, part, logs, say, step, into)
    figures.seconds = time.monotonic() - start
    figures.machine_at_end = describe() + " at the end"
    return figures
