"""The Redis round store against the real Redis: the scripts do what the in-memory store does
(the processor's unit tests rest on that), both deciders leave the same Redis, and every key a
round writes is one of the layout's."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from msgstate.schemas.records import Deletion, Response, decode_response
from msgstate.streams.engine.engine import Engine
from msgstate.streams.engine.memory_store import MemoryStore
from msgstate.streams.rounds.compiled_decider import CompiledDecider
from msgstate.streams.rounds.decider import Decider
from msgstate.streams.rounds.outbox import EVENT, OutRecord, pack_outbox
from msgstate.streams.rounds.python_decider import PythonDecider
from msgstate.streams.storage.layout import SEEN, TALLY, VALUES, Keys, decode_meta, value_field
from msgstate.streams.storage.memory import MemoryRoundStore
from msgstate.streams.storage.protocol import PartitionWrite, Read, RoundStore, Writes
from msgstate.streams.storage.redis_round_store import RedisRoundStore, ReplicaWait
from msgstate.workers.config import Settings
from msgstate.workers.tools.workload import responses


def _odd_records() -> list[bytes]:
    """A workload with key names and fields that need escaping: braces and % in a message id,
    quotes, newlines and non-ASCII in ids and values; SPEC v1.1's object, float and array
    values, deletions and erasures (some sent twice)."""
    records = list(responses(900, messages=12, identities=8, bad_share=0.08, seed=7, object_share=0.2))
    messages = sorted({item.message_id for item in map(decode_response, records[:300])
                       if isinstance(item, Response)})
    removals = [{"kind": "erase_identity", "id": "e-1", "identity_id": "layer:///identities/user3"},
                {"kind": "delete_message", "id": "d-1", "message_id": messages[0], "identity_id": "mod"},
                {"kind": "erase_identity", "id": "e-1", "identity_id": "layer:///identities/user3"},
                {"kind": "delete_message", "id": "d-2", "message_id": "m{1}%", "identity_id": "mod",
                 "status_text": "gone"},
                {"kind": "erase_identity", "id": "e-2", "identity_id": 'u"1'},
                {"kind": "erase_identity", "id": "e-3", "identity_id": "layer:///identities/user3"}]
    for n, removal in enumerate(removals):
        records.insert(150 * n + 120, orjson.dumps(removal))
    odd = [("m{1}%", 'u"1', "Set", "add", "a\nb"), ("m{1}%", 'u"1', "Set", "add", "é"),
           ("m{1}%", 'u"1', "Set", "remove", "a\nb"), ("📦", "ü\n", "LWWN", "add", 7),
           ("📦", "ü\n", "LWWN", "remove", None), ("📦", "v", "FWW", "add", True),
           ("📦", "w", "LWW", "add", [1, "a"]), ("📦", "w", "Set", "add", 1.5)]
    for n, (message, identity, kind, operation, value) in enumerate(odd * 3):
        change = {"operation": operation, "type": kind, "name": f"n.{kind}", "value": value}
        records.insert(97 * n % len(records), orjson.dumps({
            "id": f"odd-{n}", "message_id": message, "part_id": "p{art}", "identity_id": identity,
            "changes": [change]}))
    return records


# The rounds here are partition 0's of one (a round holding an erasure is one partition's).
ONE_PARTITION = {b"": 0}


async def _rounds(decider: Decider, store: RoundStore, records: list[bytes], size: int) -> None:
    assignment = await store.take(0)
    for start in range(0, len(records), size):
        batch = records[start:start + size]
        read = decider.decide(batch)
        while read is not None:
            read = decider.load(await store.read(read, ONE_PARTITION))
        decision = decider.apply()
        write = PartitionWrite(assignment, start, start + len(batch) - 1,
                               pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events))
        await store.persist([write], decision.writes, ONE_PARTITION)
        decider.commit()


def _unordered(reply: Any) -> Any:
    """A read's reply with each hash read whole as a dict: Redis gives its fields in no order."""
    metas, values, ids, whole = reply
    pairs = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in metas]
    hashes = [dict(zip(v[::2], v[1::2], strict=True)) if w else v
              for v, w in zip(values, whole, strict=True)]
    return pairs, hashes, ids, whole


async def _dump(client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    dumped: dict[str, Any] = {}
    async for key in client.scan_iter(match=f"{prefix}:*"):
        kind = (await client.type(key)).decode()
        dumped[key.decode()] = (await client.hgetall(key) if kind == "hash"
                                else await client.lrange(key, 0, -1))
    return dumped


@pytest.mark.parametrize(("whole", "registry"), [
    (10_000, {}), (3, {}),
    # Caps (SPEC v1.1): a full tally refuses new values.
    (3, {"reactions": {"type": "Set", "max_values": 3}, "latest_color": {"type": "LWW", "max_values": 2}}),
])
async def test_both_deciders_leave_in_redis_what_the_memory_store_holds(
        settings: Settings, whole: int, registry: dict[str, Any]) -> None:
    """Byte for byte: state, tallies, metas, dedupe memories (a window of 7, so they are
    trimmed), fences and outboxes; the compiled cache starts again often (limit 60), and
    values hashes are read whole or field by field past 3 fields."""
    client = aioredis.from_url(settings.redis)
    records = _odd_records()
    try:
        dumps = {}
        for name in ("python", "compiled"):
            keys = Keys(f"{settings.key_prefix}:{name}", partitions=1)
            decider: Decider = (
                PythonDecider(Engine(registry), window=7, whole_part_fields=whole) if name == "python"
                else CompiledDecider(registry, window=7, whole_part_fields=whole, limit=60))
            await _rounds(decider, RedisRoundStore(client, keys), records, 41)
            dumps[name] = {key[len(keys.prefix):]: content
                           for key, content in (await _dump(client, keys.prefix)).items()}
        memory = MemoryRoundStore(Keys("", partitions=1))
        await _rounds(PythonDecider(Engine(registry), window=7, whole_part_fields=whole), memory, records, 41)
        held = {k: v for k, v in {**memory.hashes, **memory.lists}.items() if v}
        assert len(dumps["python"]) > 30
        # Tokens come from each server's clock: only their being there is compared.
        for dumped in (*dumps.values(), held):
            for key, content in dumped.items():
                if key.endswith(":fence"):
                    assert int(content.pop(b"token")) > 0
        assert dumps["python"] == dumps["compiled"] == held
        # The v1.1 state is there: deletion marks, erasure ids, identity indexes.
        assert sum(content.get(b"deleted") == b"1" for key, content in held.items()
                   if key.endswith(":msg")) == 2
        assert [held[key] for key in held if key.endswith(":erasures")] == [
            {b"e-1": b"1", b"e-2": b"1", b"e-3": b"1"}]
        assert any(":idx:" in key for key in held)
    finally:
        await client.aclose()


async def test_every_key_a_round_writes_is_the_layouts(settings: Settings) -> None:
    client = aioredis.from_url(settings.redis)
    keys = Keys(f"{settings.key_prefix}:layout", partitions=1)
    records = _odd_records()
    try:
        await _rounds(CompiledDecider(), RedisRoundStore(client, keys), records, 50)
        layout = {keys.fence(0), keys.outbox(0), keys.erasures(0)}
        for item in map(decode_response, records):
            if isinstance(item, Deletion):
                layout |= {keys.message(item.message_id), keys.seen(item.message_id)}
            if not isinstance(item, Response):
                continue
            layout |= {keys.meta(item.message_id, item.part_id), keys.values(item.message_id, item.part_id),
                       keys.tally(item.message_id, item.part_id), keys.seen(item.message_id),
                       keys.message(item.message_id), keys.index(0, item.identity_id)}
        written = set(await _dump(client, keys.prefix))
        assert len(written) > 30 and written <= layout
    finally:
        await client.aclose()


async def test_waiting_for_a_replica_that_is_not_there_writes_the_same_and_warns_once(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    client = aioredis.from_url(settings.redis)
    plain, waiting = Keys(f"{settings.key_prefix}:nowait"), Keys(f"{settings.key_prefix}:wait")
    records = _odd_records()
    try:
        await _rounds(CompiledDecider(), RedisRoundStore(client, plain), records, 150)
        # The script gone from the cache (as on a promoted replica): the first round loads it.
        await client.script_flush()
        with caplog.at_level(logging.WARNING):
            await _rounds(CompiledDecider(), RedisRoundStore(client, waiting, ReplicaWait(1, 20)),
                          records, 150)
        dumps = [{key[len(keys.prefix):]: content
                  for key, content in (await _dump(client, keys.prefix)).items()}
                 for keys in (plain, waiting)]
        for dumped in dumps:  # tokens come from the server's clock
            for key, content in dumped.items():
                if key.endswith(":fence"):
                    assert int(content.pop(b"token")) > 0
        assert len(dumps[0]) > 30 and dumps[0] == dumps[1]
        warnings = [r.getMessage() for r in caplog.records if "replicas asked" in r.getMessage()]
        assert warnings == ["a round on Redis was acknowledged by 0 of the 1 replicas asked within 20 ms; "
                            "going on (warned once until they catch up): a failover now may lose the last "
                            "rounds, which the worker then applies again from the fence"]
    finally:
        await client.aclose()


@pytest.mark.parametrize("whole_part_fields", [10_000, 4_000])
async def test_the_read_script_answers_as_the_memory_store(settings: Settings,
                                                           whole_part_fields: int) -> None:
    """Metas, present and absent values (scalars and Sets), whole dedupe lists, odd ids, and a
    part asked for more fields than one Lua unpack takes; a values hash up to
    `whole_part_fields` comes whole, fields not asked for too."""
    client = aioredis.from_url(settings.redis)
    keys = settings.keys
    store, memory = RedisRoundStore(client, keys), MemoryRoundStore(keys)
    odd = "m {ä}%\n\"q\""
    many = [f"user-{n}" for n in range(9_001)]
    seeded: dict[str, dict[bytes, bytes]] = {
        keys.meta(odd, "p"): {b"v": b"3", b"t:pick": b"Set", b"t:r": b"LWW"},
        keys.values(odd, "p"): {value_field("pick", "ü\0x"): b'["a","b,c"]',
                                value_field("r", "bob"): b'"red"', value_field("r", "al\0ice"): b"7"},
        keys.values("big", "p"): {value_field("r", who): b"1" for who in many[::2]},
    }
    try:
        for key, mapping in seeded.items():
            await client.hset(key, mapping=mapping)  # type: ignore[arg-type]
            memory.hashes[key] = dict(mapping)
        ids = [b"r1", b"r2", "r\u00e9".encode()]
        await client.rpush(keys.seen(odd), *ids)
        memory.lists[keys.seen(odd)] = list(ids)
        asked = {(odd, "p"): [("pick", "ü\0x"), ("r", "bob"), ("r", "eve")],
                 ("none", "p"): [("r", "bob")], ("big", "p"): [("r", who) for who in many]}
        args: list[bytes | int] = [2, 3, 2, whole_part_fields, *(len(v) for v in asked.values())]
        args += [value_field(*field) for fields in asked.values() for field in fields]
        read = Read([(odd, "p"), ("none", "p")], list(asked), [odd, "none"], args)
        reply = await store.read(read, {})
        assert _unordered(reply) == _unordered(await memory.read(read, {}))
        metas, values, dedupe, whole = reply
        assert decode_meta(dict(zip(metas[0][::2], metas[0][1::2], strict=True))).version == 3
        assert dedupe == [ids, []]
        # 4,501 fields in "big": whole only under the larger bound.
        assert whole == ([1, 1, 1] if whole_part_fields > 4_501 else [1, 1, 0])
        if not whole[2]:
            assert [v for v in values[2] if v is not None] == [b"1"] * 4_501
    finally:
        await client.aclose()


async def test_the_compiled_decider_reads_what_the_python_one_reads(settings: Settings) -> None:
    """Holdings written otherwise than msgstate writes them (a Set with a `\\u` escape and a
    space, parsed the long way) are read alike by both deciders: same events and rejections."""
    client = aioredis.from_url(settings.redis)
    keys = settings.keys
    odd = "m {ä}%\n\"q\""
    try:
        await client.hset(keys.meta(odd, "p"), mapping={b"v": b"3", b"t:pick": b"Set", b"t:r": b"LWW"})
        await client.hset(keys.values(odd, "p"), mapping={
            value_field("pick", "ü"): b'["a","b,c",-4,true]',
            value_field("pick", "bob"): b'[ "\\u00e9",1]', value_field("r", "bob"): b'"red"'})
        await client.rpush(keys.seen(odd), b"r1")

        def change(kind: str, name: str, value: object) -> dict[str, object]:
            return {"operation": "add", "type": kind, "name": name, "value": value}

        records = [orjson.dumps({"id": f"x{n}", "message_id": odd, "part_id": "p", "identity_id": who,
                                 "changes": [change("Set", "pick", "é"), change("LWW", "r", "blue")]})
                   for n, who in enumerate(["ü", "bob", "eve"])]
        records.append(orjson.dumps({"id": "r1", "message_id": odd, "part_id": "p",
                                     "identity_id": "eve", "changes": [change("LWW", "r", "x")]}))
        decisions = []
        for decider in (PythonDecider(Engine(), window=50), CompiledDecider(window=50)):
            read = decider.decide(records)
            assert read is not None
            decider.load(await RedisRoundStore(client, keys).read(read, {}))
            decisions.append(decider.apply())
        python, compiled = decisions
        assert compiled.events == python.events and compiled.rejections == python.rejections
        events = [orjson.loads(value) for _, value in python.events]
        # bob held "é" already (written `"\u00e9"`): his add changes nothing, no event.
        assert [(e["response_id"], e["name"], e["old"]) for e in events[:4]] == [
            ("x0", "pick", ["a", "b,c", -4, True]), ("x0", "r", None), ("x1", "r", "red"),
            ("x2", "pick", None)]
        assert [r["reason"] for _, r in python.rejections] == ["duplicate"]
    finally:
        await client.aclose()


async def test_a_round_of_thousands_of_writes_to_one_key_keeps_every_write_in_order(
        settings: Settings) -> None:
    """The persist script puts consecutive writes to one key into one call, at most 4,000
    arguments each (Lua's unpack bound): 9,000 authors of one message in one round."""
    client = aioredis.from_url(settings.redis)
    keys = settings.keys
    records = [orjson.dumps({"id": f"r{n}", "message_id": "hot", "identity_id": f"u{n}", "changes": [
        {"operation": "add", "type": "LWW", "name": "c", "value": n},
        {"operation": "add", "type": "Set", "name": "s", "value": f"v{n % 3}"}]})
        for n in range(9_000)]
    try:
        await _rounds(CompiledDecider(), RedisRoundStore(client, keys), records, len(records))
        values = await client.hgetall(keys.values("hot", "root"))
        assert len(values) == 18_000
        assert all(values[value_field("c", f"u{n}")] == str(n).encode() for n in range(9_000))
        assert all(values[value_field("s", f"u{n}")] == f'["v{n % 3}"]'.encode() for n in range(9_000))
        assert await client.lrange(keys.seen("hot"), 0, -1) == [f"r{n}".encode() for n in range(9_000)]
        truth = MemoryStore()
        truth.apply(Engine().apply_batch([decode_response(r) for r in records], truth).delta)
        assert decode_meta(await client.hgetall(keys.meta("hot", "root"))) == truth.part_meta("hot", "root")
    finally:
        await client.aclose()


async def test_the_persist_script_writes_key_by_key_as_the_writes_say(settings: Settings) -> None:
    """The script regroups the writes by key (one call per run of one op on a key) and sums
    three or more counts of one hash in three calls: the end state is that of the writes done
    one by one, in order, as the memory store does them."""
    client = aioredis.from_url(settings.redis)
    keys = settings.keys
    store, memory = RedisRoundStore(client, keys), MemoryRoundStore(keys)
    refs = [(VALUES, "a", "p"), (VALUES, "b", "p"), (TALLY, "n", "p"), (TALLY, "f", "p"), (SEEN, "i", "")]
    a, b, counts, few, ids = (keys.state(ref) for ref in refs)
    try:
        for key, mapping in ((counts, {b"gone": b"2", b"kept": b"5", b"low": b"1"}), (few, {b"x": b"1"})):
            await client.hset(key, mapping=mapping)  # type: ignore[arg-type]
            memory.hashes[key] = dict(mapping)
        await client.rpush(ids, "old1", "old2")
        memory.lists[ids] = [b"old1", b"old2"]
        at = {key: 1 + n for n, key in enumerate((a, b, counts, few, ids))}
        ops = [
            "H", at[a], "f1", "1", "H", at[b], "g1", "x", "H", at[a], "f2", "2",
            "I", at[counts], "gone", "-2", "L", at[ids], "r1", "", "H", at[a], "f1", "3",
            "I", at[counts], "kept", "1", "D", at[b], "g1", "", "I", at[counts], "new", "3",
            "I", at[counts], "never", "-1", "I", at[counts], "low", "-4", "I", at[few], "x", "-1",
            "I", at[few], "y", "2", "L", at[ids], "r2", "", "L", at[ids], "r3", "",
            "T", at[ids], "", "3", "H", at[b], "g2", "y",
        ]
        for target in (store, memory):
            assignment = await target.take(0)
            await target.persist([PartitionWrite(assignment, 0, 0, b"")], Writes(refs, orjson.dumps(ops)), {})
            assert assignment.applied == 0
        assert await client.hgetall(a) == {b"f1": b"3", b"f2": b"2"} == memory.hashes[a]
        assert await client.hgetall(b) == {b"g2": b"y"} == memory.hashes[b]
        assert await client.hgetall(counts) == {b"kept": b"6", b"new": b"3"} == memory.hashes[counts]
        assert await client.hgetall(few) == {b"y": b"2"} == memory.hashes[few]
        assert await client.lrange(ids, 0, -1) == [b"r1", b"r2", b"r3"] == memory.lists[ids]
    finally:
        await client.aclose()
