"""The Redis store against the real Redis: the state cache stays what Redis holds."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from schemas.records import decode_response
from streams.engine.decider import PythonDecider, ReadScript, RedisLayout
from streams.engine.engine import Engine
from streams.engine.memory_store import MemoryStore
from streams.engine.native_engine import NativeStateCache
from streams.engine.state import PartMeta, StateDelta, StateNeeds
from streams.rounds.processor import EVENT, OutRecord, pack_outbox
from streams.storage.codec import decode_meta
from streams.storage.layout import Keys, value_field
from streams.storage.round_store import PartitionWrite, RedisStateStore
from workers.config import Settings
from workers.tools.workload import responses


@pytest.mark.parametrize("limit", [100_000, 40])  # 40: the cache starts again empty often
async def test_cache_equals_a_fresh_load_after_many_rounds(settings: Settings, limit: int) -> None:
    client = aioredis.from_url(settings.redis)
    # A window of 5 ids so trimming happens often; few messages so they repeat.
    store = RedisStateStore(client, Keys(settings.key_prefix), window=5)
    engine = Engine()
    decider = PythonDecider(engine, window=5, limit=limit)
    records = list(responses(600, messages=4, identities=6, bad_share=0.05, seed=41))
    try:
        assignment = await store.take("t", 0)
        for start in range(0, len(records), 37):
            batch = records[start:start + 37]
            decider.load(*await store.read(decider.decide(batch)))
            decision = decider.apply()
            write = PartitionWrite(assignment, start, start + len(batch) - 1,
                                   pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events))
            await store.persist([write], decision.delta, decision)
            decider.commit()
        cache = decider.cache
        fresh = await store.load(_all_needs(engine, records))
        # Whatever the cache holds (all of it, unless it started again) is what Redis holds.
        assert cache.metas and cache.held_by and cache.seen_ids
        assert cache.metas.items() <= fresh.metas.items()
        assert cache.held_by.items() <= fresh.held_by.items()
        assert all(list(ids) == list(fresh.seen_ids[m]) for m, ids in cache.seen_ids.items())
        if limit > 1000:
            assert cache.metas == fresh.metas
            assert cache.seen_ids.keys() == fresh.seen_ids.keys()
        assert all(len(ids) == 5 for ids in fresh.seen_ids.values())
    finally:
        await client.aclose()


def _all_needs(engine: Engine, records: list[bytes]) -> StateNeeds:
    return engine.needs([decode_response(r) for r in records])


async def test_both_deciders_leave_the_same_redis(settings: Settings) -> None:
    """The compiled decider and the Python reference persist the same rounds byte for byte:
    state, tallies, metas, dedupe memory, fences and outboxes."""
    client = aioredis.from_url(settings.redis)
    records = list(responses(900, messages=12, identities=8, bad_share=0.08, seed=7))
    # Key names and fields that need escaping: braces and % in a message id, quotes, newlines
    # and non-ASCII in ids and values.
    odd = [("m{1}%", 'u"1', "Set", "add", "a\nb"), ("m{1}%", 'u"1', "Set", "add", "é"),
           ("m{1}%", 'u"1', "Set", "remove", "a\nb"), ("📦", "ü\n", "LWWN", "add", 7),
           ("📦", "ü\n", "LWWN", "remove", None), ("📦", "v", "FWW", "add", True)]
    for n, (message, identity, kind, operation, value) in enumerate(odd * 3):
        change = {"operation": operation, "type": kind, "name": f"n.{kind}", "value": value}
        records.insert(97 * n % len(records), orjson.dumps({
            "id": f"odd-{n}", "message_id": message, "part_id": "p{art}", "identity_id": identity,
            "changes": [change]}))
    try:
        # rs: the compiled decider's delta, written by the store; made: its own writes; read:
        # its own writes and reads (values hashes read whole, or field by field past 3).
        names = ("py", "rs", "made", "read", "read-fields")
        for name, decider, made, whole in (("py", PythonDecider(Engine(), window=7), False, None),
                                           ("rs", NativeStateCache(window=7, limit=60), False, None),
                                           ("made", NativeStateCache(window=7, limit=60), True, None),
                                           ("read", NativeStateCache(window=7, limit=60), True, 10_000),
                                           ("read-fields", NativeStateCache(window=7, limit=60), True, 3)):
            keys = Keys(f"{settings.key_prefix}:{name}")
            store = RedisStateStore(client, keys, window=7, whole_part_fields=whole or 10_000)
            assignment = await store.take("t", 0)
            for start in range(0, len(records), 41):
                batch = records[start:start + 41]
                if whole is None:
                    decider.load(*await store.read(decider.decide(batch)))
                else:
                    script = decider.decide(batch, None, RedisLayout(keys.prefix, 0, 7, whole))
                    assert script is None or isinstance(script, ReadScript)
                    if script is not None:
                        script.take(await store.read_script(script.keys, script.args))
                layout = RedisLayout(keys.prefix, 2, 7)
                decision = decider.apply(layout if made else None)
                assert (decision.writes is not None) == made
                write = PartitionWrite(assignment, start, start + len(batch) - 1,
                                       pack_outbox(OutRecord(EVENT, k, v) for k, v in decision.events))
                await store.persist([write], decision.delta, decision, decision.writes)
                decider.commit()
        dumps = {}
        for name in names:
            prefix = f"{settings.key_prefix}:{name}"
            dumped = {}
            async for key in client.scan_iter(match=f"{prefix}:*"):
                kind = (await client.type(key)).decode()
                if kind == "hash":
                    content: object = await client.hgetall(key)
                else:
                    content = await client.lrange(key, 0, -1)
                dumped[key.decode()[len(prefix):]] = content
            dumps[name] = dumped
        assert len(dumps["py"]) > 30
        for name in names[1:]:
            assert dumps[name] == dumps["py"], name
    finally:
        await client.aclose()


@pytest.mark.parametrize("whole_part_fields", [10_000, 4_000])
async def test_one_read_call_returns_what_redis_holds(settings: Settings, whole_part_fields: int) -> None:
    """Metas, present and absent values (scalars and Sets), and whole dedupe lists, for odd ids
    and for a part asked for more fields than one Lua unpack takes; a values hash up to
    `whole_part_fields` comes whole, fields not asked for too."""
    client = aioredis.from_url(settings.redis)
    keys = Keys(settings.key_prefix)
    store = RedisStateStore(client, keys, whole_part_fields=whole_part_fields)
    odd = "m {ä}%\n\"q\""
    many = [f"user-{n}" for n in range(9_001)]
    try:
        await client.hset(keys.meta(odd, "p"), mapping={b"v": b"3", b"t:pick": b"set", b"t:r": b"lww"})
        await client.hset(keys.values(odd, "p"), mapping={
            value_field("pick", "ü\0x"): b'["a","b,c"]', value_field("r", "bob"): b'"red"',
            value_field("r", "al\0ice"): b"7"})
        await client.hset(keys.values("big", "p"),
                          mapping={value_field("r", who): b"1" for who in many[::2]})
        await client.rpush(keys.seen(odd), b"r1", b"r2", "r\u00e9".encode())
        needs = StateNeeds(
            parts={(odd, "p"), ("none", "p")},
            values={(odd, "p", "pick", "ü\0x"), (odd, "p", "r", "bob"), (odd, "p", "r", "eve"),
                    ("none", "p", "r", "bob"), *(("big", "p", "r", who) for who in many)},
            response_ids={(odd, "r9"), ("none", "r1")})
        metas, held, seen, whole = await store.read(needs)
        assert metas[(odd, "p")] == PartMeta(3, {"pick": "set", "r": "lww"})
        assert metas[("none", "p")] == PartMeta(0, {})
        assert held[(odd, "p", "pick", "ü\0x")] == (b'"a"', b'"b,c"')
        assert held[(odd, "p", "r", "bob")] == b'"red"'
        assert held[(odd, "p", "r", "eve")] is None
        assert held[("none", "p", "r", "bob")] is None
        assert [who for who in many if held[("big", "p", "r", who)] == b"1"] == many[::2]
        assert [who for who in many if held[("big", "p", "r", who)] is None] == many[1::2]
        assert seen == {odd: ["r1", "r2", "r\u00e9"], "none": []}
        # 4,501 fields in "big": whole only under the larger bound.
        assert whole == ({(odd, "p"), ("none", "p"), ("big", "p")} if whole_part_fields > 4_501
                         else {(odd, "p"), ("none", "p")})
        # A whole part brings the values nobody asked for (an identity with a NUL too).
        assert held.get((odd, "p", "r", "al\0ice")) == b"7"
        assert await store.read(StateNeeds(set(), set(), set())) == ({}, {}, {}, set())
    finally:
        await client.aclose()


@pytest.mark.parametrize("whole_part_fields", [10_000, 3])
async def test_the_compiled_read_loads_what_the_python_read_loads(settings: Settings,
                                                                   whole_part_fields: int) -> None:
    """The compiled decider's own read script and reply parsing leave its cache as the store's
    read and `load` do: metas, scalars, Sets (one written with a `\\u` escape and a space,
    parsed the long way), absent values, values nobody asked for in a whole part, a part
    asked for more fields than one Lua unpack takes, and dedupe memories. Both caches then
    decide the same round alike."""
    client = aioredis.from_url(settings.redis)
    keys = Keys(settings.key_prefix)
    store = RedisStateStore(client, keys, window=50, whole_part_fields=whole_part_fields)
    odd = "m {ä}%\n\"q\""
    many = [f"user-{n}" for n in range(4_500)]
    try:
        await client.hset(keys.meta(odd, "p"), mapping={b"v": b"3", b"t:pick": b"Set", b"t:r": b"LWW"})
        await client.hset(keys.values(odd, "p"), mapping={
            value_field("pick", "ü"): b'["a","b,c",-4,true]',
            value_field("pick", "bob"): b'[ "\\u00e9",1]', value_field("r", "bob"): b'"red"',
            value_field("r", "al\0ice"): b"7", value_field("r", "zed"): b'"blue"'})
        await client.hset(keys.meta("big", "p"), mapping={b"v": b"9", b"t:r": b"LWW"})
        await client.hset(keys.values("big", "p"),
                          mapping={value_field("r", who): b"1" for who in many[::2]})
        await client.rpush(keys.seen(odd), b"r1", "r\u00e9".encode())

        def change(kind: str, name: str, value: object) -> dict[str, object]:
            return {"operation": "add", "type": kind, "name": name, "value": value}

        records = [orjson.dumps({"id": f"x{n}", "message_id": odd, "part_id": "p", "identity_id": who,
                                 "changes": [change("Set", "pick", "é"), change("LWW", "r", "red")]})
                   for n, who in enumerate(["ü", "bob", "eve", "ü"])]
        records.append(orjson.dumps({"id": "r1", "message_id": odd, "part_id": "p",
                                     "identity_id": "eve", "changes": [change("LWW", "r", "x")]}))
        records += [orjson.dumps({"id": f"b{n}", "message_id": "big", "part_id": "p", "identity_id": who,
                                  "changes": [change("LWW", "r", n % 2)]}) for n, who in enumerate(many)]
        python, compiled = NativeStateCache(window=50), NativeStateCache(window=50)
        needs = python.decide(records)
        assert isinstance(needs, StateNeeds)
        python.load(*await store.read(needs))
        script = compiled.decide(records, None, RedisLayout(keys.prefix, 0, 50, whole_part_fields))
        assert isinstance(script, ReadScript)
        script.take(await store.read_script(script.keys, script.args))
        for part in ((odd, "p"), ("big", "p")):
            assert compiled._core.summary_line(*part) == python._core.summary_line(*part)
        summary = orjson.loads(compiled._core.summary_line(odd, "p"))
        assert summary["version"] == 3
        assert summary["states"]["pick"]["values"]["bob"] == ["é", 1]
        # Nobody asked for it: it comes only with a part read whole.
        assert summary["states"]["r"]["values"].get("zed") == ("blue" if whole_part_fields > 5 else None)
        layout = RedisLayout(keys.prefix, 2, 50)
        ours, theirs = compiled.apply(layout), python.apply(layout)
        assert ours.events == theirs.events and ours.rejections == theirs.rejections
        assert [r["reason"] for _, r in ours.rejections] == ["duplicate"]
        assert ours.writes == theirs.writes
        compiled.commit()
        # Everything the round read is held now: the next round over it reads nothing.
        assert compiled.decide(records[:3], None, RedisLayout(keys.prefix, 0, 50, whole_part_fields)) is None
    finally:
        await client.aclose()


async def test_a_round_of_thousands_of_writes_to_one_key_keeps_every_write_in_order(
        settings: Settings) -> None:
    """The persist script puts consecutive writes to one key into one call, at most 4,000
    arguments each (Lua's unpack bound): 9,000 authors of one message in one round."""
    client = aioredis.from_url(settings.redis)
    keys = Keys(settings.key_prefix)
    store = RedisStateStore(client, keys)
    records = [orjson.dumps({"id": f"r{n}", "message_id": "hot", "identity_id": f"u{n}", "changes": [
        {"operation": "add", "type": "LWW", "name": "c", "value": n},
        {"operation": "add", "type": "Set", "name": "s", "value": f"v{n % 3}"}]})
        for n in range(9_000)]
    try:
        decider = NativeStateCache()
        assignment = await store.take("t", 0)
        decider.load(*await store.read(decider.decide(records)))
        decision = decider.apply(RedisLayout(keys.prefix, 2, store.window))
        write = PartitionWrite(assignment, 0, len(records) - 1, b"")
        await store.persist([write], decision.delta, decision, decision.writes)
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
    one by one, in order."""
    client = aioredis.from_url(settings.redis)
    keys = Keys(settings.key_prefix)
    store = RedisStateStore(client, keys)
    a, b, counts, few, ids = (f"{settings.key_prefix}:{name}" for name in ("a", "b", "n", "f", "ids"))
    try:
        await client.hset(counts, mapping={"gone": 2, "kept": 5, "low": 1})
        await client.hset(few, mapping={"x": 1})
        await client.rpush(ids, "old1", "old2")
        assignment = await store.take("t", 0)
        state = [a, b, counts, few, ids]
        at = {key: 3 + n for n, key in enumerate(state)}  # after the partition's two keys
        ops = [
            "H", at[a], "f1", "1", "H", at[b], "g1", "x", "H", at[a], "f2", "2",
            "I", at[counts], "gone", "-2", "L", at[ids], "r1", "", "H", at[a], "f1", "3",
            "I", at[counts], "kept", "1", "D", at[b], "g1", "", "I", at[counts], "new", "3",
            "I", at[counts], "never", "-1", "I", at[counts], "low", "-4", "I", at[few], "x", "-1",
            "I", at[few], "y", "2", "L", at[ids], "r2", "", "L", at[ids], "r3", "",
            "T", at[ids], "", "3", "H", at[b], "g2", "y",
        ]
        write = PartitionWrite(assignment, 0, 0, b"")
        # Made writes: the delta and the metas before are not read.
        await store.persist([write], StateDelta(), MemoryStore(), (state, orjson.dumps(ops)))
        assert await client.hgetall(a) == {b"f1": b"3", b"f2": b"2"}
        assert await client.hgetall(b) == {b"g2": b"y"}
        assert await client.hgetall(counts) == {b"kept": b"6", b"new": b"3"}
        assert await client.hgetall(few) == {b"y": b"2"}
        assert await client.lrange(ids, 0, -1) == [b"r1", b"r2", b"r3"]
        assert assignment.applied == 0
    finally:
        await client.aclose()
