"""The figures of a run as a rich table, a list of targets, JSON, CSV and a PNG plot."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from msgstate.bench.runner import Latency, Run
from msgstate.bench.suite import Figures

LABELS = {"worker": "msgstate worker", "naive": "naive (faust + Redis GET/SET per record)",
          "table": "faust Table", "quix": "quix-streams State"}


def label(run: Run) -> str:
    name = LABELS.get(run.system, run.system)
    extra = [f"×{run.workers}"] if run.workers > 1 else []
    if run.scenario != "zipf":
        extra.append(f"{run.scenario} message")
    return f"{name} ({', '.join(extra)})" if extra else name


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def table(figures: Figures) -> Table:
    bare = figures.ceilings.get("bare_consumer")
    out = Table(title="msgstate benchmark (same run, same workload; ratios are the figures that travel)")
    for column in ("system", "responses/s", "× bare consumer", "CPU s / 1k", "peak RSS MB",
                   "offered/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "p99 from call", "note"):
        out.add_column(column, justify="left" if column in ("system", "note") else "right")
    if bare:
        out.add_row("ceiling: bare aiokafka consumer (decode only)", f"{bare:,.0f}", "1.00",
                    "", "", "", "", "", "", "", "", "")
    if "redis_hset" in figures.ceilings:
        out.add_row("ceiling: Redis pipelined HSET (writes/s)", f"{figures.ceilings['redis_hset']:,.0f}",
                    "", "", "", "", "", "", "", "", "", "")
    for run in figures.runs:
        first = True
        rows: list[Latency | None] = [*run.latencies] or [None]
        for lat in rows:
            head = [label(run), _rate(run.throughput), f"{run.throughput / bare:.2f}"
                    if run.throughput and bare else "—",
                    f"{run.cpu_per_1k:.2f}" if run.cpu_per_1k else "—", f"{run.peak_rss_mb:.0f}"] \
                if first else ["", "", "", "", ""]
            tail = ["", "", "", "", "", "", ""] if lat is None else [
                f"{lat.offered:,.0f}", _ms(lat.p50), _ms(lat.p95), _ms(lat.p99), _ms(lat.max),
                _ms(lat.p99_from_call), lat.note]
            if first and run.note:
                tail[-1] = "; ".join(filter(None, [run.note, tail[-1]]))
            out.add_row(*head, *tail)
            first = False
    return out


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def targets(figures: Figures) -> list[tuple[str, str, bool | None]]:
    """(target, same-run figure, met) for the goals the README states."""
    worker = figures.find("worker")
    found: list[tuple[str, str, bool | None]] = []
    if worker is None or not worker.throughput:
        return found
    w = worker.throughput
    bare = figures.ceilings.get("bare_consumer")
    if bare:
        found.append(("worker ≥ 50 % of the bare-consumer ceiling", f"{w / bare:.0%}", w / bare >= 0.5))
    naive = figures.find("naive")
    if naive and naive.throughput:
        found.append(("worker ≥ 5× the naive pattern", f"{w / naive.throughput:.1f}×",
                      w / naive.throughput >= 5))
    for peer in ("table", "quix"):
        run = figures.find(peer)
        if run is None or not run.throughput:
            continue
        found.append((f"worker ahead of {LABELS[peer]} on throughput", f"{w / run.throughput:.1f}×",
                      w > run.throughput))
        pairs = [(a, b) for a in worker.latencies for b in run.latencies
                 if a.offered == b.offered and a.p99 is not None and b.p99 is not None]
        if pairs:
            a, b = pairs[-1]
            found.append((f"worker ahead of {LABELS[peer]} on p99 at {a.offered:,.0f}/s",
                          f"{_ms(a.p99)} vs {_ms(b.p99)} ms", (a.p99 or 0) < (b.p99 or 0)))
        else:
            found.append((f"worker ahead of {LABELS[peer]} on p99", "peer saturated at every load", True))
    half = min(worker.latencies, key=lambda lat: abs(lat.offered - w / 2), default=None)
    if half is not None and half.p99 is not None:
        found.append((f"p99 < 50 ms at about half the max rate ({half.offered:,.0f}/s = "
                      f"{half.offered / w:.0%})", f"{half.p99:.0f} ms", half.p99 < 50))
    hot = figures.find("worker", "hot")
    if hot and hot.throughput:
        found.append(("hot message (10 % on one id) keeps ≥ 50 % of the throughput",
                      f"{hot.throughput / w:.0%}", hot.throughput / w >= 0.5))
    two = figures.find("worker", workers=2)
    if two and two.throughput:
        found.append(("2 workers on 12 partitions (figure, no target)", f"{two.throughput / w:.2f}×", None))
    return found


def print_report(console: Console, figures: Figures) -> None:
    console.print(f"[dim]{figures.machine}; run took {figures.seconds:.0f} s[/]")
    console.print(table(figures))
    for name, figure, met in targets(figures):
        verdict = "" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
        console.print(f"  {name}: {figure} {verdict}")
    worker = figures.find("worker")
    if worker and worker.redis:
        r = worker.redis
        console.print(f"  Redis: {r['bytes_per_live_value']:.0f} bytes per live value "
                      f"({r['live_values']:,.0f} live values), {r['bytes_per_dedupe_id']:.0f} bytes "
                      f"per remembered response id")


def write(folder: Path, figures: Figures) -> list[Path]:
    """figures.json, figures.csv and throughput-latency.png in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = asdict(figures)
    data["targets"] = [{"target": t, "figure": f, "met": m} for t, f, m in targets(figures)]
    json_path = folder / "figures.json"
    json_path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    csv_path = folder / "figures.csv"
    with csv_path.open("w", newline="") as out:
        rows = csv.writer(out)
        rows.writerow(["system", "scenario", "workers", "responses_per_s", "cpu_s_per_1k", "peak_rss_mb",
                       "offered_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "p99_from_call_ms", "note"])
        for run in figures.runs:
            lats: list[Latency | None] = [*run.latencies] or [None]
            for lat in lats:
                rows.writerow([run.system, run.scenario, run.workers, run.throughput, run.cpu_per_1k,
                               round(run.peak_rss_mb, 1)]
                              + ([None] * 7 if lat is None else
                                 [lat.offered, lat.p50, lat.p95, lat.p99, lat.max, lat.p99_from_call,
                                  lat.note or run.note]))
    png = folder / "throughput-latency.png"
    plot(figures, png)
    return [json_path, csv_path, png]


def plot(figures: Figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.6), gridspec_kw={"width_ratios": [1, 1.4]})
    names, values, colors = [], [], []
    if "bare_consumer" in figures.ceilings:
        names.append("bare consumer\n(ceiling)")
        values.append(figures.ceilings["bare_consumer"])
        colors.append("#bbbbbb")
    palette = {"worker": "#1f77b4", "naive": "#d62728", "table": "#ff7f0e", "quix": "#2ca02c"}
    for run in figures.runs:
        if run.throughput:
            names.append(label(run).replace(" (", "\n("))
            values.append(run.throughput)
            colors.append(palette.get(run.system, "#9467bd"))
    left.barh(names[::-1], values[::-1], color=colors[::-1])
    left.set_xscale("log")  # the ceiling is orders of magnitude above the systems
    left.set_xlabel("responses/s (first produce → last event), log scale")
    left.set_title("Throughput, as fast as possible")
    for y, v in enumerate(values[::-1]):
        left.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    left.margins(x=0.3)
    styles = {"p50": ":", "p95": "--", "p99": "-"}
    for run in figures.runs:
        points = [lat for lat in run.latencies if lat.p99 is not None]
        if not points or run.workers != 1:
            continue
        for pct, style in styles.items():
            if run.system != "worker" and pct == "p95":
                continue
            right.plot([lat.offered for lat in points], [getattr(lat, pct) for lat in points],
                       style, marker="o", color=palette.get(run.system, "#9467bd"),
                       alpha=1.0 if run.scenario == "zipf" else 0.5,
                       label=f"{label(run)} {pct}")
    right.axhline(50, color="black", linewidth=0.6, alpha=0.5)
    right.set_yscale("log")
    right.set_xlabel("offered load, responses/s")
    right.set_ylabel("produce → summary-change event, ms")
    right.set_title("Latency percentiles against offered load")
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"msgstate benchmark, {figures.started} — {figures.machine}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
