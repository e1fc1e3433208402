"""The `RoundStore` in memory: Redis's hashes and lists as dicts, and the round scripts'
semantics (streams/lua/take_partition.lua, read_state.lua, apply_round.lua, ack_outbox.lua)
in Python, under the same key names. The processor's fence, retry and outbox rules are
unit-tested on it; the Redis store's integration tests hold the scripts to the same results.

Faults for tests: an exception put in `fail_before` is raised by the next persist before it
writes anything (Redis unreachable); one in `fail_after` is raised after it wrote everything
(the reply was lost). `lose()` forgets every write since a `snapshot()`, as a failover to a
replica that lacked them does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from msgstate.schemas.exceptions import AlreadyApplied, Fenced, StoreBehind
from msgstate.streams.storage.layout import META, SEEN, VALUES, KeyRef, Keys
from msgstate.streams.storage.protocol import (
    Assignment,
    Evicted,
    Home,
    PartitionWrite,
    Read,
    Writes,
    partition_finder,
)

Snapshot = tuple[dict[str, dict[bytes, bytes]], dict[str, list[bytes]]]


def _bytes(value: bytes | int | str) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class MemoryRoundStore:
    def __init__(self, keys: Keys | None = None, *, cross_partition: bool = True) -> None:
        self.keys = keys or Keys("msgstate")
        self.cross_partition = cross_partition
        self._clock = 0
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.fail_before: list[BaseException] = []
        self.fail_after: list[BaseException] = []
        self.persists = 0  # persist calls that wrote

    async def take(self, partition: int) -> Assignment:
        fence = self.hashes.setdefault(self.keys.fence(partition), {})
        # As the script: a token never handed out before, even after lost writes.
        self._clock += 1
        token = max(int(fence.get(b"token", b"0")) + 1, self._clock)
        fence[b"token"] = _bytes(token)
        applied = int(fence.get(b"offset", b"-1"))
        pending = list(self.lists.get(self.keys.outbox(partition), []))
        return Assignment(partition, token, applied, pending)

    def snapshot(self) -> Snapshot:
        return ({k: dict(v) for k, v in self.hashes.items()}, {k: list(v) for k, v in self.lists.items()})

    def lose(self, snapshot: Snapshot) -> None:
        self.hashes, self.lists = snapshot

    async def read(self, read: Read, home: Home) -> Any:
        where = partition_finder(self.keys, home)
        args = read.args
        np, nv, ni, most = (int(a) for a in args[:4])
        assert (np, nv, ni) == (len(read.parts), len(read.value_parts), len(read.messages))
        metas = [self._flat(self.hashes.get(self.keys.state((META, *part), where(part[0])), {}))
                 for part in read.parts]
        values: list[list[bytes | None]] = []
        whole: list[int] = []
        at = 4 + nv
        for i, part in enumerate(read.value_parts):
            asked = int(args[4 + i])
            held = self.hashes.get(self.keys.state((VALUES, *part), where(part[0])), {})
            if len(held) <= most:
                values.append(list(self._flat(held)))
                whole.append(1)
            else:
                values.append([held.get(_bytes(f)) for f in args[at:at + asked]])
                whole.append(0)
            at += asked
        ids = [list(self.lists.get(self.keys.state((SEEN, m, ""), where(m)), [])) for m in read.messages]
        if len(args) == at:
            return [metas, values, ids, whole]

        def key(ref: KeyRef) -> str:
            return self.keys.state(ref, where(ref[1]))
        hashes = [self._flat(self.hashes.get(key(ref), {})) for ref in read.hashes]
        wanted = args[at + 2:]
        fields = [self.hashes.get(key(ref), {}).get(_bytes(f))
                  for ref, f in zip(read.fields, wanted, strict=True)]
        return [metas, values, ids, whole, hashes, fields]

    async def persist(self, parts: Sequence[PartitionWrite], writes: Writes, home: Home) -> Evicted:
        if self.fail_before:
            raise self.fail_before.pop(0)
        for i, part in enumerate(parts, 1):
            a = part.assignment
            fence = self.hashes.get(self.keys.fence(a.partition), {})
            token = fence.get(b"token")
            applied = int(fence.get(b"offset", b"-1"))
            if int(token or b"0") < a.token or applied < a.applied:
                raise StoreBehind(f"BEHIND {i} partition token {token!r} and fence {applied}, "
                                  f"caller has {a.token} and {a.applied}", a.partition)
            if token != _bytes(a.token):
                raise Fenced(f"FENCED {i} partition token is {token!r}, caller has {a.token}", a.partition)
            if part.first <= applied:
                raise AlreadyApplied(f"REAPPLY {i} offset {part.first} was applied already "
                                     f"(fence {applied})", a.partition)
        for part in parts:
            a = part.assignment
            outbox = self.lists.setdefault(self.keys.outbox(a.partition), [])
            del outbox[:a.acked]
            if part.outbox:
                outbox.append(part.outbox)
            self.hashes[self.keys.fence(a.partition)][b"offset"] = _bytes(part.last)
        evicted = self._apply(writes, partition_finder(self.keys, home))
        self.persists += 1
        if self.fail_after:
            raise self.fail_after.pop(0)
        for part in parts:
            part.assignment.applied = part.last
            part.assignment.acked = 0
        return evicted

    async def ack(self, assignment: Assignment, count: int) -> None:
        if count == 0:
            return
        fence = self.hashes.get(self.keys.fence(assignment.partition), {})
        if fence.get(b"token") != _bytes(assignment.token):
            raise Fenced("FENCED partition token moved", assignment.partition)
        del self.lists.setdefault(self.keys.outbox(assignment.partition), [])[:count]

    def outbox(self, partition: int) -> list[bytes]:
        return list(self.lists.get(self.keys.outbox(partition), []))

    def fence(self, partition: int) -> tuple[int, int]:
        """(token, last applied offset) of the partition."""
        fence = self.hashes.get(self.keys.fence(partition), {})
        return int(fence.get(b"token", b"0")), int(fence.get(b"offset", b"-1"))

    def state_keys(self) -> set[str]:
        """Every key that holds something, fences and outboxes included."""
        return {k for k, v in self.hashes.items() if v} | {k for k, v in self.lists.items() if v}

    def _apply(self, writes: Writes, where: Callable[[str], int]) -> Evicted:
        """apply_round.lua's writes: H HSET, D HDEL, I HINCRBY dropping the field at 0 or
        below, L RPUSH, T keep the newest `value` items of a list; returns what T dropped."""
        keys = [self.keys.state(ref, where(ref[1])) for ref in writes.keys]
        evicted: Evicted = []
        ops = orjson.loads(writes.ops)
        for at in range(0, len(ops), 4):
            op, k, field, value = ops[at:at + 4]
            key = keys[k - 1]
            if op == "H":
                self.hashes.setdefault(key, {})[field.encode()] = value.encode()
            elif op == "D":
                self.hashes.setdefault(key, {}).pop(field.encode(), None)
            elif op == "I":
                counts = self.hashes.setdefault(key, {})
                total = int(counts.get(field.encode(), b"0")) + int(value)
                if total > 0:
                    counts[field.encode()] = _bytes(total)
                else:
                    counts.pop(field.encode(), None)
            elif op == "L":
                self.lists.setdefault(key, []).append(field.encode())
            elif op == "T":
                items = self.lists.setdefault(key, [])
                dropped = max(0, len(items) - int(value))
                if dropped:
                    evicted.append((k, items[:dropped]))
                    del items[:dropped]
            else:
                raise ValueError(f"unknown op {op!r}")
        return evicted

    @staticmethod
    def _flat(hash_: dict[bytes, bytes]) -> list[bytes]:
        return [item for pair in hash_.items() for item in pair]
