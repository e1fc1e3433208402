"""The benchmark's pure parts: the peers' per-message state, the targets, the result files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from msgstate.bench.peers.message_state import MessageState
from msgstate.bench.peers.rules import apply_one, rejected_whole
from msgstate.bench.report import targets, write
from msgstate.bench.runner import Latency, Run
from msgstate.bench.suite import Figures
from msgstate.schemas.records import decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.replay import replay
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


def _figures() -> Figures:
    worker = Run("worker", "zipf", 1, 1000, throughput=6000.0, cpu_per_1k=0.3, peak_rss_mb=90,
                 latencies=[Latency(1500, 5, 9, 20, 40, 900), Latency(3000, 6, 12, 30, 60, 1800)])
    naive = Run("naive", "zipf", 1, 1000, throughput=2000.0,
                latencies=[Latency(1500, 50, 90, 200, 400, 900), Latency(3000, note="over capacity")])
    quix = Run("quix", "zipf", 1, 1000, throughput=7000.0, latencies=[Latency(3000, 2, 4, 10, 20, 1800)])
    hot = Run("worker", "hot", 1, 1000, throughput=5000.0)
    return Figures("test machine", "now", {}, [worker, naive, quix, hot], {"bare_consumer": 10_000.0})


def test_targets_are_judged_on_same_run_ratios() -> None:
    verdicts = {name: met for name, _, met in targets(_figures())}
    assert verdicts["worker ≥ 50 % of the bare-consumer ceiling"] is True
    assert verdicts["worker ≥ 5× the naive pattern"] is False
    assert verdicts["worker ahead of quix-streams State on throughput"] is False
    assert verdicts["worker ahead of quix-streams State on p99 at 3,000/s"] is False
    assert verdicts["p99 < 50 ms at about half the max rate (3,000/s = 50%)"] is True
    assert verdicts["hot message (10 % on one id) keeps ≥ 50 % of the throughput"] is True


def test_results_are_written_as_json_csv_and_png(tmp_path: Path) -> None:
    paths = write(tmp_path, _figures())
    assert [p.name for p in paths] == ["figures.json", "figures.csv", "throughput-latency.png"]
    data = orjson.loads(paths[0].read_bytes())
    assert data["runs"][0]["throughput"] == 6000.0
    assert paths[1].read_text().count("\n") == 1 + 2 + 2 + 1 + 1
    assert paths[2].read_bytes().startswith(b"\x89PNG")


def test_a_bad_peer_name_is_one_line_and_a_failure() -> None:
    done = subprocess.run([sys.executable, "-m", "msgstate.workers", "bench", "--peers", "kafka-streams"],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "msgstate: --peers: unknown peer 'kafka-streams'; choose from naive, table, quix or none"]
