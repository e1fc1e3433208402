"""The benchmark's pure parts: the peers' per-message state, the spreads and paired ratios, the
targets, the report and the result files, the bare pipeline's work per record."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from rich.console import Console

from msgstate.bench.bare_pipeline import BarePipeline, event_of
from msgstate.bench.compare import main as compare_main
from msgstate.bench.compare import rows
from msgstate.bench.kafka_io import response_of
from msgstate.bench.peers.message_state import MessageState
from msgstate.bench.peers.rules import apply_one, rejected_whole
from msgstate.bench.procs import process_age
from msgstate.bench.report import print_report, targets, write
from msgstate.bench.runner import Drain, Latency, Plan, Run, Sample
from msgstate.bench.spread import Spread, agreement, paired
from msgstate.bench.suite import Figures, parts, stages, turns
from msgstate.schemas.records import Response, decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.replay import replay
from msgstate.workers.config import Settings, Topics
from msgstate.workers.tools.workload import responses
from tests.conftest import ROOT


def test_per_message_state_through_bytes_gives_the_summaries_of_replay() -> None:
    records = list(responses(2000, messages=30, identities=40, bad_share=0.05, seed=5, hot_share=0.1))
    stored: dict[str, bytes] = {}  # what the naive peer keeps in Redis, one value per message
    engine = Engine()
    events = []
    for raw in records:
        item = decode_response(raw)
        if isinstance(item, dict):
            assert rejected_whole(item)[0][0] is False
            continue
        doc = stored.get(item.message_id)
        state = MessageState() if doc is None else MessageState.from_bytes(doc)
        changed, outputs = apply_one(engine, item, state)
        if changed:
            stored[item.message_id] = state.to_bytes()
        events += [orjson.loads(value) for is_event, _, value in outputs if is_event]
    got = sorted((s for mid, doc in stored.items() for s in MessageState.from_bytes(doc).summaries(mid)),
                 key=lambda s: (s["message_id"], s["part_id"]))
    want_events: list[dict[str, object]] = []
    assert got == replay(records, on_event=want_events.append).summaries()
    assert sorted(e["event_id"] for e in events) == sorted(str(e["event_id"]) for e in want_events)


def test_hot_share_puts_that_share_on_one_message() -> None:
    records = [orjson.loads(r) for r in responses(20_000, messages=500, bad_share=0, seed=3, hot_share=0.1)]
    hot = sum(1 for r in records if r["message_id"] == "layer:///messages/hot-3")
    assert 0.09 < hot / len(records) < 0.11
    # Without it, the workload is what it always was.
    assert list(responses(50, seed=4)) == list(responses(50, seed=4, hot_share=0.0))


def test_the_bad_share_still_makes_invalid_changes_under_v1_1() -> None:
    """v1.1 takes any JSON value, so the workload's invalid change is a float past 2^63."""
    reasons: Counter[str] = Counter()
    for line in responses(5_000, messages=50, bad_share=0.05, seed=3):
        decoded = decode_response(line)
        if isinstance(decoded, dict):
            reasons[decoded["reason"]] += 1
        elif isinstance(decoded, Response):
            reasons.update("invalid_change" for c in decoded.changes if c.error is not None)
    assert reasons["invalid_change"] > 20 and reasons["malformed"] > 20


def _drains(*rates: float | None, cpu: float = 0.5) -> list[Drain]:
    return [Drain(rate, 1000 / rate if rate else 0.0,
                  {"system": cpu, "redis": cpu / 2, "broker": cpu / 4, "harness": 0.01},
                  events=1200, event_bytes=1200 * 300) for rate in rates]


def _figures() -> Figures:
    # Paired by repeat, the worker is 0.5, 0.8 and 0.6 of the bare pipeline (median 0.6); its
    # median over the bare pipeline's median would be 5,000 / 10,000 = 0.5.
    worker = Run("worker", "zipf", 1, 1000, drains=_drains(4000, 8000, 5000), warm_up=[3000, 4500],
                 warm_up_seconds=12.0, peak_rss_mb=90,
                 latencies=[Latency(5000, [Sample(5, 9, 20, 40, 900), Sample(6, 9, 60, 70, 900),
                                           Sample(5, 8, 30, 45, 900)])])
    bare = Run("bare_pipeline", "zipf", 1, 1000, drains=_drains(8000, 10_000, 8330, cpu=0.3))
    consumer = Run("bare_consumer", "zipf", 1, 1000, drains=_drains(40_000, 40_000, 50_000))
    naive = Run("naive", "zipf", 1, 100, drains=_drains(2000, 1000, 1500),
                latencies=[Latency(5000, note="over capacity")])
    quix = Run("quix", "zipf", 1, 100, drains=_drains(7000),
               latencies=[Latency(5000, [Sample(2, 4, 10, 20, 1800)])])
    hot = Run("worker", "hot", 1, 1000, drains=_drains(2000, 2600, 3000))
    return Figures("test machine", "now", {"repeats": 3}, [worker, bare, consumer, naive, quix, hot])


def test_spread_is_the_median_with_min_and_max_of_what_was_measured() -> None:
    spread = Spread.of([3.0, None, 1.0, 2.0])
    assert spread == Spread(2.0, 1.0, 3.0, 3)
    assert spread.text() == "2 (1-3)"
    assert spread.width == 1.0
    assert Spread.of([None]) is None
    assert Spread.of([7.0]).text("{:.1f}") == "7.0"  # type: ignore[union-attr]


def test_ratios_are_taken_pair_by_pair_not_median_over_median() -> None:
    assert paired([4, 8, None, 5], [8, 10, 9, 0]) == [0.5, 0.8]
    figures = _figures()
    assert [round(r, 2) for r in figures.ratios("bare_pipeline")] == [0.5, 0.8, 0.6]
    ratio = figures.ratio("bare_pipeline")
    assert ratio is not None and round(ratio.median, 2) == 0.6 and (ratio.low, ratio.high) == (0.5, 0.8)


def test_systems_take_turns_going_first() -> None:
    assert [turns(["worker", "bare"], n) for n in range(3)] == [
        ["worker", "bare"], ["bare", "worker"], ["worker", "bare"]]


def test_three_runs_agree_when_their_medians_lie_within_the_share() -> None:
    assert round(agreement([0.60, 0.66, 0.63]), 3) == 0.1
    assert agreement([0.5, 0.6]) > 0.15


def test_drains_and_latencies_run_in_sessions_of_their_own() -> None:
    plan = Plan(["zipf", "hot"], [1, 2], ["naive"], [2500, 5000], 40_000, 6, 90, repeats=3, warm_up=2,
                peer_responses=5000)
    found = [(p.scenario, [s for s, _ in p.systems], p.drains, p.latency_rounds, p.bare_consumer)
             for p in parts(plan)]
    latency = [("zipf", ["worker"], False, 1, False)] * 3
    assert found == [
        ("zipf", ["worker", "bare_pipeline"], True, 0, True), *latency,
        ("hot", ["worker"], True, 0, False),  # the latency of the first scenario only
        ("zipf", ["naive"], True, 0, False),  # peers: drains only
        ("zipf", ["worker"], True, 0, False),  # ×2
    ]
    sessions, with_drains = 7, 4
    # start + warm-up per session, repeats of drains, each latency round a phase per load
    assert stages(plan) == sessions * 3 + with_drains * 3 + 3 * 2
    hot_only = [(p.scenario, p.drains, p.latency_rounds) for p in parts(replace(plan, scenarios=["hot"]))]
    assert hot_only[:4] == [("hot", True, 0), *[("hot", False, 1)] * 3]


def test_targets_are_judged_on_same_run_paired_ratios_and_medians() -> None:
    verdicts = {name: met for name, _, met in targets(_figures())}
    assert verdicts["worker ≥ 60% of the bare pipeline (paired drains)"] is True
    assert verdicts["p99 < 50 ms at 5,000 responses/s offered (median of the repeats)"] is True  # 20, 30, 60
    assert verdicts["worker ≥ 5× the naive pattern (medians)"] is False
    assert verdicts["worker ahead of quix-streams State on throughput (medians)"] is False
    assert verdicts["worker ahead of quix-streams State on p99 at 5,000/s"] is False
    assert verdicts["hot message (10 % on one id) keeps ≥ 50 % of the throughput (medians)"] is True


def test_a_peer_measured_for_throughput_only_is_judged_on_throughput_only() -> None:
    figures = _figures()
    figures.runs.append(Run("table", "zipf", 1, 100, drains=_drains(900, 1000, 1100)))
    verdicts = {name: met for name, _, met in targets(figures)}
    assert verdicts["worker ahead of faust Table on throughput (medians)"] is True
    assert not [name for name in verdicts if "faust Table on p99" in name]


def test_the_target_share_fails_below_sixty_per_cent() -> None:
    figures = _figures()
    bare = figures.find("bare_pipeline")
    assert bare is not None
    bare.drains = _drains(8000, 16_000, 10_000)  # ratios 0.5, 0.5, 0.5
    verdicts = {name: met for name, _, met in targets(figures)}
    assert verdicts["worker ≥ 60% of the bare pipeline (paired drains)"] is False


def test_the_report_says_the_warm_up_and_where_the_time_goes() -> None:
    console = Console(record=True, width=250)
    print_report(console, _figures())
    text = console.export_text()
    assert "warm-up: 2 unmeasured drains of 1,000 responses per system at the start of each session" in text
    assert "3,000 → 4,500/s" in text and "because a fresh worker reads" in text
    assert "Where the time goes" in text
    # 0.5 CPU s over 1,000 responses is 500 µs in the worker, 300 in the bare pipeline
    assert "500.0 (500.0-500.0)" in text and "+200.0" in text
    assert "5,000 (4,000-8,000)" in text  # the worker's drains
    assert "0.60 (0.50-0.80)" in text  # paired, not 5,000 / 8,333


def test_the_report_says_when_a_young_broker_was_warmed_first() -> None:
    figures = _figures()
    console = Console(record=True, width=1000)  # the line unfolded
    print_report(console, figures)
    assert "throwaway" not in console.export_text()
    figures.broker_age, figures.stack_warm_up = 9.0, 112.0
    print_report(console, figures)
    assert ("The broker had started 9 s before the run: first 112 s of drains through a throwaway "
            "worker and bare pipeline, until it was 120 s old") in console.export_text()
    assert 0 < (process_age(os.getpid()) or 0) < 3600
    assert process_age(None) is None


def test_results_are_written_as_json_csv_and_png(tmp_path: Path) -> None:
    paths = write(tmp_path, _figures())
    assert [p.name for p in paths] == ["figures.json", "figures.csv", "throughput-latency.png"]
    data = orjson.loads(paths[0].read_bytes())
    assert data["runs"][0]["drains"][0]["rate"] == 4000
    assert [round(r, 2) for r in data["summary"]["worker_per_bare_pipeline"]["repeats"]] == [0.5, 0.8, 0.6]
    assert data["summary"]["p99_ms"]["msgstate worker"]["5000"]["median"] == 30
    rows = list(csv.reader(paths[1].read_text().splitlines()))
    drains, latency = [r for r in rows if r[0] == "drain"], [r for r in rows if r[0] == "latency"]
    assert len(drains) == 3 + 3 + 3 + 3 + 1 + 3
    assert len(latency) == 3 + 1 + 1  # the worker's three phases, naive not run, quix's one
    assert paths[2].read_bytes().startswith(b"\x89PNG")


def test_a_bare_pipeline_event_names_the_response_the_harness_counts() -> None:
    record = next(iter(responses(1, seed=3)))
    event, write = event_of(7, 42, orjson.loads(record))
    data = orjson.loads(event)
    assert (data["message_id"], data["response_id"]) == response_of(record)
    assert data["event_id"] == "7:42" and write == (data["message_id"], data["identity_id"])
    assert data["changes"] == orjson.loads(record)["changes"]
    broken, none = event_of(7, 43, None)
    assert orjson.loads(broken) == {"event_id": "7:43", "message_id": None, "response_id": None}
    assert none is None


class _Pipe:
    def __init__(self, log: list[tuple[str, str, int]]) -> None:
        self.log, self.queued = log, []  # type: ignore[var-annotated]

    def hset(self, key: str, field: str, value: int) -> None:
        self.queued.append((key, field, value))

    async def execute(self) -> None:
        self.log += self.queued


class _Redis:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, int]] = []

    def pipeline(self, transaction: bool) -> _Pipe:
        assert transaction is False
        return _Pipe(self.writes)


class _Batch:
    def __init__(self, room: int) -> None:
        self.room, self.records = room, []  # type: ignore[var-annotated]

    def append(self, key: bytes | None, value: bytes, timestamp: None) -> object | None:
        if len(self.records) == self.room:
            return None
        self.records.append((key, value))
        return object()


class _Producer:
    def __init__(self, room: int) -> None:
        self.room = room
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_bare_pipeline_writes_once_and_produces_once_per_record() -> None:
    records = list(responses(300, messages=20, bad_share=0.1, seed=8))
    fetched = {TopicPartition("in", p): [ConsumerRecord("in", p, n, 0, 0, b"k", record, None, 0, 0, [])
                                         for n, record in enumerate(records[p::3])] for p in range(3)}
    redis_fake, producer = _Redis(), _Producer(room=40)
    settings = Settings(topics=Topics("b"), key_prefix="kp")
    pipeline = BarePipeline(settings, "in", client=redis_fake, consumer=object(), producer=producer)
    await pipeline.process(fetched)
    named = sum(1 for r in records if response_of(r) is not None)
    assert named < len(records)  # the workload has broken records: they are written nowhere
    assert len(redis_fake.writes) == named
    assert all(key.startswith("kp:bare:{layer:///messages/") for key, _, _ in redis_fake.writes)
    assert {topic for topic, _, _ in producer.sent} == {"b.summary-changes"}
    for p in range(3):  # each partition's events in order, in batches of at most 40, in one partition
        batches = [events for _, partition, events in producer.sent if partition == p]
        assert max(map(len, batches)) == 40
        ids = [orjson.loads(value)["event_id"] for events in batches for _, value in events]
        assert ids == [f"{p}:{n}" for n in range(len(fetched[TopicPartition("in", p)]))]


def test_a_bad_peer_name_is_one_line_and_a_failure() -> None:
    done = subprocess.run([sys.executable, "-m", "msgstate.workers", "bench", "--peers", "kafka-streams"],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "msgstate: --peers: unknown peer 'kafka-streams'; choose from naive, table, quix or none"]


def _summary(low: float, median: float, high: float) -> dict[str, object]:
    def spread(median: float, low: float, high: float) -> dict[str, float]:
        return {"median": median, "min": low, "max": high}

    return {"machine": "m", "summary": {
        "worker_per_bare_pipeline": spread(median, low, high),
        "throughput": {"msgstate worker": spread(30_000, 29_000, 31_000)},
        "p99_ms": {"msgstate worker": {"5000": spread(31, 25, 40)}}}}


def test_runs_agree_when_their_medians_of_the_ratio_lie_within_fifteen_per_cent() -> None:
    lines = rows({"a": _summary(0.6, 0.66, 0.7), "b": _summary(0.55, 0.6, 0.7),
                  "c": _summary(0.6, 0.68, 0.7)})
    assert lines[0] == ("a: worker / bare pipeline 66% (60%-70%), worker 30,000 (29,000-31,000) "
                        "responses/s, p99 at 5,000/s 31 (25-40) ms; m")
    assert lines[-1] == ("the medians of the ratio lie 13% apart (largest over smallest): the runs "
                         "agree within 15%")
    apart = rows({"a": _summary(0.5, 0.55, 0.6), "b": _summary(0.6, 0.66, 0.7)})
    assert apart[-1].endswith("the runs do not agree within 15%")
    assert compare_main([]) == 2


def test_compare_fails_when_the_runs_do_not_agree(tmp_path: Path) -> None:
    for name, median in (("a", 0.5), ("b", 0.56), ("c", 0.7)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "figures.json").write_bytes(orjson.dumps(_summary(median, median, median)))
    assert compare_main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert compare_main([str(tmp_path / n) for n in "abc"]) == 1
