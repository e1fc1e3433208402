"""App persistence (SPEC section 8) against the real Redis: the whole API, atomicity, once tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from msgstate.schemas.exceptions import AppRecordNotFound, AppUpdateConflict, ValidationError
from msgstate.streams.apps.persistence import AppPersistence
from msgstate.streams.apps.persistence_model import AssociationModel as M
from msgstate.streams.apps.persistence_model import AssociationRecord as A
from msgstate.workers.config import Settings

ROOM = A(M.ROOM, "GENERAL")
USER = A(M.USER, "frodo")
MISC = A(M.MISC, "message-count")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[AppPersistence]:
    client = aioredis.from_url(settings.redis)
    try:
        yield AppPersistence(client, settings.key_prefix, "test-app")
    finally:
        await client.aclose()


async def test_create_read_and_ids(store: AppPersistence) -> None:
    plain = await store.create({"a": 1, "nested": {"b": [1, "x", None, []]}, "s": "text"})
    assert await store.read(plain) == {"a": 1, "nested": {"b": [1, "x", None, []]}, "s": "text"}
    one = await store.create_with_association({"n": 1}, ROOM)
    both = await store.create_with_associations({"n": 2}, [ROOM, USER])
    assert len({plain, one, both}) == 3
    assert await store.read("no-such-id") is None
    assert sorted(d["n"] for d in await store.read_by_association(ROOM)) == [1, 2]
    # Several associations mean all of them, in any order.
    assert await store.read_by_associations([USER, ROOM]) == [{"n": 2}]
    assert await store.read_by_associations([ROOM, USER]) == [{"n": 2}]
    assert await store.read_by_associations([ROOM, MISC]) == []
    records = await store.read_records_by_association(USER)
    assert [(r.id, r.data, r.associations) for r in records] == [(both, {"n": 2}, frozenset({ROOM, USER}))]
    assert [r.id for r in await store.read_all()] == sorted([plain, one, both])
    assert (await store.create({})) and await store.read_by_association(MISC) == []


async def test_update_replaces_data_keeps_associations(store: AppPersistence) -> None:
    rid = await store.create_with_association({"a": 1, "b": 2}, ROOM)
    assert await store.update(rid, {"c": 3}) == rid
    assert await store.read(rid) == {"c": 3}
    assert await store.read_by_association(ROOM) == [{"c": 3}]
    with pytest.raises(AppRecordNotFound):
        await store.update("missing", {"x": 1})
    assert await store.read("missing") is None
    assert await store.update("chosen-id", {"x": 1}, upsert=True) == "chosen-id"
    assert await store.read("chosen-id") == {"x": 1}


async def test_update_and_remove_by_associations(store: AppPersistence) -> None:
    first = await store.create_with_associations({"v": 1}, [ROOM, USER])
    second = await store.create_with_associations({"v": 2}, [USER, ROOM, MISC])
    only_room = await store.create_with_association({"v": 3}, ROOM)
    updated = await store.update_by_associations([USER, ROOM], {"v": 9})
    assert sorted(updated) == sorted([first, second])
    assert await store.read(only_room) == {"v": 3}
    assert await store.update_by_association(A(M.FILE, "f1"), {"v": 0}) == []
    [created] = await store.update_by_associations([A(M.FILE, "f1"), USER], {"v": 5}, upsert=True)
    assert await store.read_by_associations([USER, A(M.FILE, "f1")]) == [{"v": 5}]
    assert created not in updated

    assert await store.remove(only_room) == {"v": 3}
    assert await store.remove(only_room) is None
    removed = await store.remove_by_associations([ROOM, USER])
    assert sorted(d["v"] for d in removed) == [9, 9]
    assert await store.read(first) is None and await store.read(second) is None
    assert await store.read_by_association(ROOM) == []
    assert await store.read_by_association(USER) == [{"v": 5}]
    assert await store.remove_by_association(USER) == [{"v": 5}]
    assert await store.read_all() == []
    # Removing every record leaves no key of it behind but the revision counter's hash.
    client = store.client
    left = {k.decode() async for k in client.scan_iter(match=f"{store.keys.base}*")}
    assert left <= {store.keys.base + "seq", store.keys.base + "done"}


async def test_bad_input_is_a_clear_error_and_writes_nothing(store: AppPersistence) -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        await store.create([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not JSON"):
        await store.create({"x": object()})
    with pytest.raises(ValidationError, match="bytes as JSON"):
        await store.create({"x": "a" * 70_000})
    with pytest.raises(ValidationError, match="association model"):
        A("channel", "x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="association id"):
        A(M.ROOM, "")
    with pytest.raises(ValidationError, match="at least one association"):
        await store.read_by_associations([])
    with pytest.raises(ValidationError, match="app name"):
        AppPersistence(store.client, "p", "bad name{}")
    rid = await store.create_with_association({"count": "many"}, MISC)
    with pytest.raises(ValidationError, match="cannot increment count"):
        await store.increment(rid, "count")
    with pytest.raises(ValidationError, match="64-bit"):
        await store.increment(rid, "n", by=2**63)
    assert await store.read_all() == [r for r in await store.read_all() if r.id == rid]
    assert await store.read(rid) == {"count": "many"}
    assert A.parse("livechat-message:a:b") == A(M.LIVECHAT_MESSAGE, "a:b")


async def test_increment_is_exact_under_concurrency(store: AppPersistence) -> None:
    async def bump(n: int) -> None:
        for _ in range(n):
            await store.increment_by_association(MISC, "count")

    await asyncio.gather(*(bump(200) for _ in range(10)))
    [record] = await store.read_records_by_association(MISC)
    assert record.data == {"count": 2000}
    assert await store.increment(record.id, "count", by=-5) == 1995
    assert await store.increment(record.id, "other", by=3) == 3
    with pytest.raises(AppRecordNotFound):
        await store.increment("missing", "count")
    assert await store.increment("fresh", "count", upsert=True) == 1


async def test_modify_is_exact_under_concurrency(store: AppPersistence, settings: Settings) -> None:
    rid = await store.create({"count": 0, "seen": []})

    def add(data: dict[str, object]) -> dict[str, object]:
        count = data["count"]
        assert isinstance(count, int)
        return {**data, "count": count + 1}

    async def work(n: int) -> None:
        for _ in range(n):
            await store.modify(rid, add)

    await asyncio.gather(*(work(30) for _ in range(8)))
    assert await store.read(rid) == {"count": 240, "seen": []}
    with pytest.raises(AppRecordNotFound):
        await store.modify("missing", add)
    assert await store.modify("new", lambda d: {"count": 1}, upsert=True) == {"count": 1}
    # A writer that always gets in between read and write: modify gives up, writing nothing.
    other = redis.Redis.from_url(settings.redis)

    def spoiled(data: dict[str, object]) -> dict[str, object]:
        other.hincrby(store.keys.revisions, rid, 1)
        return {"count": -1}

    with pytest.raises(AppUpdateConflict):
        await store.modify(rid, spoiled, attempts=3)
    other.close()
    assert await store.read(rid) == {"count": 240, "seen": []}


async def test_once_tokens_apply_each_write_once(store: AppPersistence) -> None:
    for _ in range(3):  # the same event handled three times
        scoped = store.scoped("messages:m1:counter")
        await scoped.increment_by_association(MISC, "count")
        rid = await scoped.create_with_association({"from": "m1"}, ROOM)
        await scoped.increment_by_association(MISC, "count", by=10)
    assert await store.read_by_association(MISC) == [{"count": 11}]
    assert await store.read_by_association(ROOM) == [{"from": "m1"}]
    assert await store.read(rid) == {"from": "m1"}
    # Another event is another scope.
    await store.scoped("messages:m2:counter").increment_by_association(MISC, "count")
    assert await store.read_by_association(MISC) == [{"count": 12}]
    # An explicit token works without a scope, and the window is bounded.
    small = AppPersistence(store.client, store.keys.prefix, "small-window", window=5)
    for i in range(20):
        await small.increment("c", "n", upsert=True, once=f"t{i}")
        await small.increment("c", "n", upsert=True, once=f"t{i}")
    assert await small.read("c") == {"n": 20}
    assert await store.client.zcard(small.keys.base + "done") == 5
