"""The figures of a run as rich tables, a list of targets, JSON, CSV and a PNG plot."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from msgstate.bench.runner import PROCESSES, Run
from msgstate.bench.spread import Spread
from msgstate.bench.suite import STACK_SETTLE, Figures

LABELS = {"worker": "msgstate worker", "bare_pipeline": "ceiling: bare pipeline (decode, HSET, event)",
          "bare_consumer": "ceiling: bare consumer (decode only)",
          "naive": "naive (faust + Redis GET/SET per record)", "table": "faust Table",
          "quix": "quix-streams State"}
STORES = {"redis": "single Redis", "cluster": "Redis Cluster"}
PROCESS_NAMES = {"system": "the system itself", "redis": "Redis", "broker": "Kafka broker",
                 "harness": "benchmark harness (waiting)"}
TARGET_SHARE = 0.60  # of the bare pipeline: the figure the worker is judged on
TARGET_LOAD = 5_000.0  # responses/s offered, where p99 must stay under TARGET_P99
TARGET_P99 = 50.0  # ms
WHY_WARM = ("a fresh worker reads a message's state from Redis the first time it meets the message, "
            "until its cache holds the messages in play, and a started broker runs slower at first "
            "(its JIT, page cache and group coordinator)")


def label(run: Run) -> str:
    name = LABELS.get(run.system, run.system)
    extra = [f"×{run.workers}"] if run.workers > 1 else []
    if run.scenario != "zipf":
        extra.append(f"{run.scenario} message")
    if run.store:
        extra.append(STORES.get(run.store, run.store))
    return f"{name} ({', '.join(extra)})" if extra else name


def _text(spread: Spread | None, form: str = "{:,.0f}") -> str:
    return "—" if spread is None else spread.text(form)


def _share(spread: Spread | None) -> str:
    return _text(spread, "{:.0%}")


def throughput_table(figures: Figures) -> Table:
    out = Table(title=f"Throughput: drains of a backlog, median (min-max) of {figures.plan['repeats']}")
    for column in ("system", "responses/s", "× bare pipeline", "× bare consumer", "CPU µs / response",
                   "peak RSS MB", "note"):
        out.add_column(column, justify="left" if column in ("system", "note") else "right")
    for run in figures.runs:
        ratio = {"worker": (figures.ratio("bare_pipeline"), figures.ratio("bare_consumer")),
                 "bare_pipeline": (Spread(1, 1, 1, 1), figures.ratio("bare_consumer", "bare_pipeline")),
                 "bare_consumer": (None, Spread(1, 1, 1, 1))}.get(run.system, (None, None)) \
            if run.scenario == "zipf" and run.workers == 1 and not run.store else (None, None)
        notes = "; ".join(filter(None, [run.note, *{d.note for d in run.drains}]))
        cpu = run.cpu_us("system") if run.system != "bare_consumer" else run.cpu_us("harness")
        out.add_row(label(run), _text(run.throughput), _text(ratio[0], "{:.2f}"), _text(ratio[1], "{:.2f}"),
                    _text(cpu, "{:.1f}"), f"{run.peak_rss_mb:.0f}" if run.peak_rss_mb else "", notes)
    return out


def cpu_rows(figures: Figures) -> list[tuple[str, Spread | None, Spread | None]]:
    """(process, worker µs per response, bare pipeline µs per response), and their total."""
    worker, bare = figures.find("worker"), figures.find("bare_pipeline")
    if worker is None or bare is None:
        return []
    rows = [(name, worker.cpu_us(name), bare.cpu_us(name)) for name in PROCESSES]
    rows.append(("total", total_cpu_us(worker), total_cpu_us(bare)))
    return rows


def total_cpu_us(run: Run) -> Spread | None:
    return Spread.of(sum(d.cpu.values()) / run.responses * 1e6 if d.rate and d.cpu else None
                     for d in run.drains)


def wall_us(run: Run) -> Spread | None:
    return Spread.of(1e6 / d.rate if d.rate else None for d in run.drains)


def cores_busy(run: Run) -> Spread | None:
    return Spread.of(sum(d.cpu.values()) / d.seconds if d.rate and d.seconds else None for d in run.drains)


def cpu_table(figures: Figures) -> Table | None:
    rows = cpu_rows(figures)
    if not rows:
        return None
    out = Table(title="Where the time goes: CPU µs per response during the drains, per process, "
                      "median (min-max)")
    for column in ("process", "msgstate worker", "bare pipeline", "worker - bare pipeline"):
        out.add_column(column, justify="left" if column == "process" else "right")
    for name, worker, bare in rows:
        gap = f"{worker.median - bare.median:+.1f}" if worker and bare else "—"
        out.add_row(PROCESS_NAMES.get(name, name), _text(worker, "{:.1f}"), _text(bare, "{:.1f}"), gap)
    worker_run, bare_run = figures.find("worker"), figures.find("bare_pipeline")
    assert worker_run is not None and bare_run is not None
    out.add_row("wall time per response (1 / responses/s)", _text(wall_us(worker_run), "{:.1f}"),
                _text(wall_us(bare_run), "{:.1f}"), "")
    out.add_row("cores busy (CPU s per wall s)", _text(cores_busy(worker_run), "{:.2f}"),
                _text(cores_busy(bare_run), "{:.2f}"), "")
    per = [Spread.of(d.events / r.responses if d.rate else None for d in r.drains)
           for r in (worker_run, bare_run)]
    size = [Spread.of(d.event_bytes / d.events if d.events else None for d in r.drains)
            for r in (worker_run, bare_run)]
    out.add_row("events produced per response", *(_text(x, "{:.2f}") for x in per), "")
    out.add_row("bytes per event", *(_text(x) for x in size), "")
    return out


def redis_nodes(run: Run) -> list[str]:
    """The Redis processes a run's drains read: "redis", or a cluster's masters then replicas."""
    found = {name for d in run.drains for name in d.cpu if name.startswith(("master:", "replica:"))}
    return sorted(found, key=lambda n: (n.startswith("replica"), int(n.partition(":")[2]))) or ["redis"]


def cpu_us_together(run: Run, names: list[str]) -> Spread | None:
    """CPU µs per response of several processes together, drain by drain (µs per response is
    ms per 1,000 responses)."""
    return Spread.of(sum(d.cpu.get(n, 0.0) for n in names) / run.responses * 1e6 if d.rate and d.cpu else None
                     for d in run.drains)


@dataclass(frozen=True, slots=True)
class StoreRow:
    """The worker on one Redis setup, in the comparison."""

    run: Run
    on_single: Spread | None  # its drains over the single Redis's, pair by pair
    worker_cpu: Spread | None  # µs per response
    masters_cpu: Spread | None
    replicas_cpu: Spread | None
    per_live_value: float | None  # bytes of used_memory, summed over the masters


def store_rows(figures: Figures) -> list[StoreRow]:
    rows = []
    for store in STORES:
        run = figures.find("worker", store=store)
        if run is None:
            continue
        nodes = redis_nodes(run)
        masters = [n for n in nodes if not n.startswith("replica:")]
        replicas = [n for n in nodes if n.startswith("replica:")]
        on_single = Spread.of(figures.on_cluster()) if store == "cluster" else Spread(1, 1, 1, 1)
        rows.append(StoreRow(run, on_single, run.cpu_us("system"), cpu_us_together(run, masters),
                             cpu_us_together(run, replicas) if replicas else None,
                             run.redis.get("used_memory_per_live_value")))
    return rows


@dataclass(frozen=True, slots=True)
class ShardRow:
    node: str
    cpu: Spread | None  # µs per response
    partitions: int | None = None  # a master's: input partitions whose slot it serves
    keys: int | None = None
    used_memory: int | None = None


def shard_rows(run: Run) -> list[ShardRow]:
    """A row per Redis process of the run: its CPU, and for a master what the keys hold on it."""
    loads = {shard.node: shard for shard in run.shards}
    rows = []
    for node in redis_nodes(run):
        load = loads.get(node)
        rows.append(ShardRow(node, run.cpu_us(node), *((load.partitions, load.keys, load.used_memory)
                                                        if load else ())))
    return rows


def store_table(figures: Figures) -> Table | None:
    rows = store_rows(figures)
    if len(rows) < 2:
        return None
    masters = len(rows[1].run.shards)
    out = Table(title=f"The worker on a single Redis and on a Redis Cluster of {masters} masters, a "
                      f"replica each: paired drains of the same records, median (min-max) of "
                      f"{figures.plan['repeats']}")
    for column in ("Redis", "responses/s", "× single Redis", "worker CPU ms / 1,000 responses",
                   "Redis CPU ms / 1,000 (masters)", "replicas", "used_memory bytes / live value", "note"):
        out.add_column(column, justify="left" if column in ("Redis", "note") else "right")
    for row in rows:
        notes = "; ".join(filter(None, [row.run.note, *{d.note for d in row.run.drains}]))
        out.add_row(STORES[row.run.store], _text(row.run.throughput), _text(row.on_single, "{:.2f}"),
                    _text(row.worker_cpu, "{:.1f}"), _text(row.masters_cpu, "{:.1f}"),
                    _text(row.replicas_cpu, "{:.1f}"),
                    "—" if row.per_live_value is None else f"{row.per_live_value:.0f}", notes)
    return out


def shard_table(figures: Figures) -> Table | None:
    runs = [r for r in (figures.find("worker", store=s) for s in STORES) if r is not None]
    if len(runs) < 2:
        return None
    out = Table(title="Per Redis process: CPU during the worker's drains, and what its keys hold at the end")
    for column in ("Redis", "process", "input partitions", "keys", "used_memory MB",
                   "CPU ms / 1,000 responses"):
        out.add_column(column, justify="left" if column in ("Redis", "process") else "right")
    for run in runs:
        for n, row in enumerate(shard_rows(run)):
            out.add_row(STORES[run.store] if n == 0 else "", row.node,
                        "" if row.partitions is None else str(row.partitions),
                        "" if row.keys is None else f"{row.keys:,}",
                        "" if row.used_memory is None else f"{row.used_memory / 2**20:.1f}",
                        _text(row.cpu, "{:.1f}"))
    return out


def latency_table(figures: Figures) -> Table:
    out = Table(title="Latency, produce → summary-change event (ms, from the response's broker append), "
                      f"median (min-max) of {figures.plan['repeats']}")
    for column in ("system", "offered/s", "p50", "p95", "p99", "max", "p99 from call", "events", "note"):
        out.add_column(column, justify="left" if column in ("system", "note") else "right")
    for run in figures.runs:
        first = True
        for lat in run.latencies:
            notes = "; ".join(filter(None, [lat.note, *{s.note for s in lat.samples}]))
            events = Spread.of(float(s.events) for s in lat.samples)
            out.add_row(label(run) if first else "", f"{lat.offered:,.0f}", _text(lat.spread("p50")),
                        _text(lat.spread("p95")), _text(lat.spread("p99")), _text(lat.spread("max")),
                        _text(lat.spread("p99_from_call")), _text(events), notes)
            first = False
    return out


def latency_at(run: Run | None, offered: float) -> Spread | None:
    if run is None:
        return None
    return next((lat.spread("p99") for lat in run.latencies if lat.offered == offered), None)


def targets(figures: Figures) -> list[tuple[str, str, bool | None]]:
    """(target, same-run figure, met or None for a figure without a target)."""
    worker = figures.find("worker")
    found: list[tuple[str, str, bool | None]] = []
    if worker is None or worker.throughput is None:
        return found
    w = worker.throughput.median
    bare = figures.ratio("bare_pipeline")
    if bare is not None:
        found.append((f"worker ≥ {TARGET_SHARE:.0%} of the bare pipeline (paired drains)", _share(bare),
                      bare.median >= TARGET_SHARE))
        found.append(("spread of that ratio over the repeats, (max - min) / median", f"{bare.width:.0%}",
                      None))
    consumer = figures.ratio("bare_consumer")
    if consumer is not None:
        found.append(("worker / bare consumer (paired drains; a figure, no target)", _share(consumer), None))
    p99 = latency_at(worker, TARGET_LOAD)
    if p99 is not None:
        found.append((f"p99 < {TARGET_P99:.0f} ms at {TARGET_LOAD:,.0f} responses/s offered (median of "
                      f"the repeats)", f"{_text(p99)} ms", p99.median < TARGET_P99))
    naive = figures.find("naive")
    if naive and naive.throughput:
        found.append(("worker ≥ 5× the naive pattern (medians)", f"{w / naive.throughput.median:.1f}×",
                      w / naive.throughput.median >= 5))
    for peer in ("table", "quix"):
        run = figures.find(peer)
        if run is None or run.throughput is None:
            continue
        found.append((f"worker ahead of {LABELS[peer]} on throughput (medians)",
                      f"{w / run.throughput.median:.1f}×", w > run.throughput.median))
        pairs = [(a, b) for a in worker.latencies for b in run.latencies
                 if a.offered == b.offered and a.spread() is not None and b.spread() is not None]
        if pairs:
            a, b = pairs[-1]
            ours, theirs = a.spread(), b.spread()
            assert ours is not None and theirs is not None
            found.append((f"worker ahead of {LABELS[peer]} on p99 at {a.offered:,.0f}/s",
                          f"{ours.median:.0f} vs {theirs.median:.0f} ms", ours.median < theirs.median))
        elif run.latencies:
            found.append((f"worker ahead of {LABELS[peer]} on p99", "peer over capacity at every load", True))
    hot = figures.find("worker", "hot")
    if hot and hot.throughput:
        found.append(("hot message (10 % on one id) keeps ≥ 50 % of the throughput (medians)",
                      f"{hot.throughput.median / w:.0%}", hot.throughput.median / w >= 0.5))
    two = figures.find("worker", workers=2)
    if two and two.throughput:
        found.append(("2 workers on 12 partitions (medians; a figure, no target)",
                      f"{two.throughput.median / w:.2f}×", None))
    return found


def warm_up_line(figures: Figures) -> str | None:
    worker, bare = figures.find("worker"), figures.find("bare_pipeline")
    if worker is None or not worker.warm_up:
        return None
    rates = ", ".join(f"{LABELS.get(r.system, r.system)} " + " → ".join(
        "—" if v is None else f"{v:,.0f}" for v in r.warm_up) + "/s" for r in (worker, bare) if r)
    line = (f"warm-up: {len(worker.warm_up)} unmeasured drains of {worker.responses:,} responses per "
            f"system at the start of each session, before anything is measured (the worker's and the "
            f"bare pipeline's: {worker.warm_up_seconds:.0f} s; {rates}), because {WHY_WARM}.")
    if figures.stack_warm_up:
        line += (f" The broker had started {figures.broker_age:.0f} s before the run: first "
                 f"{figures.stack_warm_up:.0f} s of drains through a throwaway worker and bare pipeline, "
                 f"until it was {STACK_SETTLE:.0f} s old, because a started broker ran slow here for its "
                 f"first 80-110 s, in garbage collection.")
    last = worker.warm_up[-1]
    if last and worker.throughput:
        share = last / worker.throughput.median
        line += f" The last warm-up drain ran at {share:.0%} of the measured median."
    return line


def gap_line(figures: Figures) -> str | None:
    """The gap to the bare pipeline, in CPU and wall time per response, process by process."""
    rows = {name: (w, b) for name, w, b in cpu_rows(figures)}
    worker, bare = figures.find("worker"), figures.find("bare_pipeline")
    if not rows or worker is None or bare is None:
        return None
    walls = wall_us(worker), wall_us(bare)
    if any(w is None or b is None for w, b in rows.values()) or walls[0] is None or walls[1] is None:
        return None
    med = {name: (w.median, b.median) for name, (w, b) in rows.items() if w and b}
    names = {"system": "its own process", "redis": "Redis", "broker": "the broker"}
    parts = ", ".join(f"{names[n]} {med[n][0] - med[n][1]:+.1f}" for n in names)
    own, redis_cpu = med["system"][0], med["redis"][0]
    return (f"Per response the worker took {walls[0].median:.1f} µs of wall time, the bare pipeline "
            f"{walls[1].median:.1f}. The worker's CPU against the bare pipeline's: "
            f"{med['total'][0] - med['total'][1]:+.1f} µs ({parts}). Within a round the worker waits "
            f"for Redis's script, so its own CPU and Redis's add up: {own:.1f} + {redis_cpu:.1f} = "
            f"{own + redis_cpu:.1f} µs of its {walls[0].median:.1f}; the bare pipeline's own CPU is "
            f"{med['system'][1]:.1f} µs of its {walls[1].median:.1f}.")


def print_report(console: Console, figures: Figures) -> None:
    console.print(f"[dim]{figures.machine}; {figures.machine_at_end}; run took {figures.seconds:.0f} s[/]")
    warm = warm_up_line(figures)
    if warm:
        console.print(warm)
    console.print(throughput_table(figures))
    cpu = cpu_table(figures)
    if cpu is not None:
        console.print(cpu)
        gap = gap_line(figures)
        if gap:
            console.print(gap)
    for table in (store_table(figures), shard_table(figures)):
        if table is not None:
            console.print(table)
    console.print(latency_table(figures))
    for name, figure, met in targets(figures):
        verdict = "" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
        console.print(f"  {name}: {figure} {verdict}")
    worker = figures.find("worker")
    if worker and worker.redis:
        r = worker.redis
        console.print(f"  Redis: {r['bytes_per_live_value']:.0f} bytes per live value "
                      f"({r['live_values']:,.0f} live values), {r['bytes_per_dedupe_id']:.0f} bytes "
                      f"per remembered response id")


def summary(figures: Figures) -> dict[str, Any]:
    """The medians and spreads the report shows, for figures.json."""
    def spread(value: Spread | None) -> dict[str, float] | None:
        return None if value is None else {"median": value.median, "min": value.low, "max": value.high}

    return {
        "worker_per_bare_pipeline": {**(spread(figures.ratio("bare_pipeline")) or {}),
                                     "repeats": figures.ratios("bare_pipeline")},
        "worker_per_bare_consumer": {**(spread(figures.ratio("bare_consumer")) or {}),
                                     "repeats": figures.ratios("bare_consumer")},
        "throughput": {label(r): spread(r.throughput) for r in figures.runs},
        "cpu_us_per_response": {label(r): {p: spread(r.cpu_us(p)) for p in PROCESSES} for r in figures.runs},
        "cluster_per_single_redis": {**(spread(Spread.of(figures.on_cluster())) or {}),
                                     "repeats": figures.on_cluster()},
        "p99_ms": {label(r): {f"{lat.offered:.0f}": spread(lat.spread()) for lat in r.latencies}
                   for r in figures.runs if r.latencies},
    }


CSV_HEAD = ["kind", "system", "scenario", "workers", "redis", "repeat", "offered_per_s", "responses_per_s",
            *(f"cpu_s_{p}" for p in PROCESSES), "p50_ms", "p95_ms", "p99_ms", "max_ms", "p99_from_call_ms",
            "events", "note"]


def write(folder: Path, figures: Figures) -> list[Path]:
    """figures.json, figures.csv (a row per drain and per latency phase) and throughput-latency.png."""
    folder.mkdir(parents=True, exist_ok=True)
    data = asdict(figures)
    data["summary"] = summary(figures)
    data["targets"] = [{"target": t, "figure": f, "met": m} for t, f, m in targets(figures)]
    json_path = folder / "figures.json"
    json_path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    csv_path = folder / "figures.csv"
    with csv_path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(CSV_HEAD)
        for run in figures.runs:
            who = [run.system, run.scenario, run.workers, run.store]
            for n, d in enumerate(run.drains):
                rows.writerow(["drain", *who, n + 1, None, d.rate, *(d.cpu.get(p) for p in PROCESSES),
                               None, None, None, None, None, None, d.note or run.note])
            for lat in run.latencies:
                if not lat.samples:
                    rows.writerow(["latency", *who, None, lat.offered, None, *[None] * len(PROCESSES),
                                   None, None, None, None, None, None, lat.note])
                for n, s in enumerate(lat.samples):
                    rows.writerow(["latency", *who, n + 1, lat.offered, None, *[None] * len(PROCESSES),
                                   s.p50, s.p95, s.p99, s.max, s.p99_from_call, s.events, s.note])
    png = folder / "throughput-latency.png"
    plot(figures, png)
    return [json_path, csv_path, png]


def plot(figures: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.6), gridspec_kw={"width_ratios": [1, 1.4]})
    palette = {"worker": "#1f77b4", "naive": "#d62728", "table": "#ff7f0e", "quix": "#2ca02c",
               "bare_pipeline": "#888888", "bare_consumer": "#bbbbbb"}
    shown = [r for r in figures.runs if r.throughput]
    names = [label(r).replace(" (", "\n(") for r in shown][::-1]
    spreads = [r.throughput for r in shown][::-1]
    values = [s.median for s in spreads if s]
    errors = [[s.median - s.low for s in spreads if s], [s.high - s.median for s in spreads if s]]
    left.barh(names, values, xerr=errors, capsize=3,
              color=[palette.get(r.system, "#9467bd") for r in shown][::-1])
    left.set_xscale("log")  # the ceilings are orders of magnitude above the peers
    left.set_xlabel("responses/s, drain of a backlog: median, min-max bars (log scale)")
    left.set_title("Throughput")
    for y, spread in enumerate(s for s in spreads if s):
        left.text(spread.high, y, f"  {spread.median:,.0f}", va="center", fontsize=8)
    left.margins(x=0.3)
    for run in figures.runs:
        points = [lat for lat in run.latencies if lat.spread() is not None]
        if not points or run.workers != 1:
            continue
        color = palette.get(run.system, "#9467bd")
        alpha = 1.0 if run.scenario == "zipf" else 0.5
        p99 = [lat.spread() for lat in points]
        right.errorbar([lat.offered for lat in points], [s.median for s in p99 if s],
                       yerr=[[s.median - s.low for s in p99 if s], [s.high - s.median for s in p99 if s]],
                       fmt="-o", capsize=3, color=color, alpha=alpha, label=f"{label(run)} p99")
        p50 = [lat.spread("p50") for lat in points]
        right.plot([lat.offered for lat in points], [s.median if s else None for s in p50], ":",
                   marker="o", color=color, alpha=alpha, label=f"{label(run)} p50")
    right.axhline(TARGET_P99, color="black", linewidth=0.6, alpha=0.5)
    right.set_yscale("log")
    right.set_xlabel("offered load, responses/s")
    right.set_ylabel("produce → summary-change event, ms")
    right.set_title("Latency against offered load: median, min-max bars")
    if right.get_legend_handles_labels()[0]:  # no latency measured: no legend
        right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"msgstate benchmark, {figures.started} — {figures.machine}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
