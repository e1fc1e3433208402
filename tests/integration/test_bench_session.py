"""The benchmark's drains on the real stack: a backlog laid while the systems are suspended,
drained by the worker and the bare pipeline in turn, with each process's CPU read.

Nothing here judges a speed; it checks that the figures measure what they say.
"""

from __future__ import annotations

from pathlib import Path

import redis

from msgstate.bench import kafka_io
from msgstate.bench.runner import PROCESSES, Session
from msgstate.workers.config import Settings


def test_a_backlog_is_laid_unread_then_drained_by_each_system(stack_settings: Settings,
                                                             tmp_path: Path) -> None:
    session = Session(stack_settings, "zipf", tmp_path, timeout=60, say=lambda _: None)
    try:
        worker, bare = session.add("worker"), session.add("bare_pipeline")
        session.start()
        before = {s.name: s.counter.total() for s in (worker, bare)}
        batch = session.lay(3000)
        # Suspended while the backlog was published: neither has produced anything of it.
        assert {s.name: s.counter.total() for s in (worker, bare)} == before
        assert 0 < batch.sent.named < len(batch.records)  # the workload has broken records too
        drains = {s.name: session.drain(s, batch) for s in (bare, worker)}
        for name, drain in drains.items():
            assert drain.rate is not None and drain.rate > 0, name
            assert not drain.note, drain.note
            assert set(drain.cpu) == set(PROCESSES)
            assert drain.cpu["system"] > 0 and drain.cpu["broker"] > 0, (name, drain.cpu)
        # The engine's events for the worker; one event per record for the bare pipeline.
        assert drains["worker"].events == batch.events
        assert drains["bare_pipeline"].events == len(batch.records)
        assert drains["worker"].cpu["redis"] > 0  # found the stack's Redis, and read its CPU
        consumer = session.bare_consumer(batch)
        assert consumer.rate is not None and consumer.rate > 0
        topics = {t for t in kafka_io.topic_names(stack_settings) if session.tag in t}
        own = [session.settings.topics, bare.settings.topics]  # the session's, the bare pipeline's
        assert {t.responses for t in own} | {t.summary_changes for t in own} <= topics
    finally:
        session.close()
    assert not [t for t in kafka_io.topic_names(stack_settings) if session.tag in t]
    client = redis.Redis.from_url(stack_settings.redis)
    try:
        assert not list(client.scan_iter(match=f"{session.tag}*"))
    finally:
        client.close()
