"""App persistence in Redis (SPEC section 8), after Rocket.Chat's IPersistence / IPersistenceRead.

Every write is one Lua script call (`lua/app_write.lua`), so it is atomic across all workers.
Read-modify-write is safe through `increment*` (one script: HINCRBY) and `modify` (optimistic:
read with the record's revision, write only if the revision is unchanged, retry otherwise).

A write may carry a *once token*: the script remembers the newest tokens it applied (per app)
and a write whose token it has seen changes nothing. The apps host gives each handler call a
persistence scoped to (event, handler), which tokens every write by its order in the call, so a
re-delivered event does not apply its writes twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.exceptions import ResponseError

from msgstate.schemas.exceptions import AppRecordExists, AppRecordNotFound, AppUpdateConflict, ValidationError
from msgstate.streams.apps.persistence_model import (
    AppRecord,
    AssociationRecord,
    check_app_name,
    check_associations,
    check_record_id,
    decode_data,
    encode_data,
)
from msgstate.streams.storage.client import AsyncRedis
from msgstate.streams.storage.layout import AppKeys
from msgstate.streams.storage.scripts import lua

ONCE_WINDOW = 100_000  # once tokens remembered per app: far more than a worker has in flight
MODIFY_ATTEMPTS = 200
DEAD_LETTERS_KEPT = 10_000  # per app, approximately (XADD MAXLEN ~)

Data = dict[str, Any]


def new_record_id() -> str:
    """Time-ordered (microseconds, hex) then random: ids sort roughly by creation."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


class _Scripts:
    """The registered scripts of one client, shared by every accessor made from it."""

    def __init__(self, client: AsyncRedis) -> None:
        self.write = client.register_script(lua("app_write.lua"))
        self.read = client.register_script(lua("app_read.lua"))


class PersistenceRead:
    """IPersistenceRead: an app's records, read in one consistent step per call."""

    def __init__(self, client: AsyncRedis, key_prefix: str, app: str,
                 scripts: _Scripts | None = None) -> None:
        self.client = client
        self.app = check_app_name(app)
        self.keys = AppKeys(key_prefix, app)
        self._scripts = scripts or _Scripts(client)

    async def read(self, record_id: str) -> Data | None:
        """The record's data, or None when there is no such record."""
        found = await self.read_record(record_id)
        return found.data if found else None

    async def read_record(self, record_id: str) -> AppRecord | None:
        found = await self._read("ids", [check_record_id(record_id)])
        return found[0] if found else None

    async def read_by_association(self, association: AssociationRecord) -> list[Data]:
        return await self.read_by_associations([association])

    async def read_by_associations(self, associations: Iterable[AssociationRecord]) -> list[Data]:
        """The data of every record that has all of these associations (and maybe more)."""
        return [r.data for r in await self.read_records_by_associations(associations)]

    async def read_records_by_association(self, association: AssociationRecord) -> list[AppRecord]:
        return await self.read_records_by_associations([association])

    async def read_records_by_associations(self, associations: Iterable[AssociationRecord]
                                           ) -> list[AppRecord]:
        """Like `read_by_associations`, with each record's id and associations; ordered by id."""
        return await self._read("assoc", check_associations(associations))

    async def read_all(self) -> list[AppRecord]:
        """Every record of the app, ordered by id."""
        return await self._read("all", [])

    async def _read(self, mode: str, args: list[str]) -> list[AppRecord]:
        rows = await self._scripts.read(keys=[self.keys.ids], args=[self.keys.names, mode, *args])
        return [AppRecord(rid.decode(), decode_data(flat),
                          frozenset(AssociationRecord.parse(a.decode()) for a in links), int(rev))
                for rid, flat, links, rev in rows]


class AppPersistence(PersistenceRead):
    """IPersistence: an app's writes. Every method is one atomic step in Redis."""

    def __init__(self, client: AsyncRedis, key_prefix: str, app: str, *,
                 window: int = ONCE_WINDOW, scope: str | None = None,
                 scripts: _Scripts | None = None) -> None:
        super().__init__(client, key_prefix, app, scripts)
        self.window = window
        self.scope = scope
        self._writes = 0

    def scoped(self, scope: str) -> AppPersistence:
        """The same store, every write of which gets the once token `<scope>#<n>` (n-th write)."""
        return AppPersistence(self.client, self.keys.prefix, self.app, window=self.window, scope=scope,
                              scripts=self._scripts)

    def reader(self) -> PersistenceRead:
        return PersistenceRead(self.client, self.keys.prefix, self.app, self._scripts)

    # -- create -------------------------------------------------------------------------------

    async def create(self, data: Mapping[str, Any], *, once: str | None = None) -> str:
        """Store a new record; returns its id."""
        return await self._create(data, [], once)

    async def create_with_association(self, data: Mapping[str, Any], association: AssociationRecord,
                                      *, once: str | None = None) -> str:
        return await self._create(data, check_associations([association]), once)

    async def create_with_associations(self, data: Mapping[str, Any],
                                       associations: Iterable[AssociationRecord],
                                       *, once: str | None = None) -> str:
        return await self._create(data, check_associations(associations), once)

    async def _create(self, data: Mapping[str, Any], associations: list[str], once: str | None) -> str:
        flat = encode_data(data)
        token = self._token(once)
        record_id = self._new_id(token)
        _, rid = await self._write("create", token, record_id, associations, flat)
        return str(rid.decode())

    # -- update -------------------------------------------------------------------------------

    async def update(self, record_id: str, data: Mapping[str, Any], upsert: bool = False,
                     *, once: str | None = None) -> str:
        """Replace the record's data (its associations stay). A missing record is created when
        `upsert`, else AppRecordNotFound."""
        flat = encode_data(data)
        await self._write("update", self._token(once), check_record_id(record_id), [], flat,
                          upsert=upsert)
        return record_id

    async def update_by_association(self, association: AssociationRecord, data: Mapping[str, Any],
                                    upsert: bool = False, *, once: str | None = None) -> list[str]:
        return await self.update_by_associations([association], data, upsert, once=once)

    async def update_by_associations(self, associations: Iterable[AssociationRecord],
                                     data: Mapping[str, Any], upsert: bool = False,
                                     *, once: str | None = None) -> list[str]:
        """Replace the data of every record that has all these associations; returns their ids.
        With none and `upsert`, creates one with exactly these associations."""
        names = check_associations(associations)
        flat = encode_data(data)
        token = self._token(once)
        _, ids = await self._write("update_assoc", token, self._new_id(token), names, flat, upsert=upsert)
        return [i.decode() for i in ids]

    # -- remove -------------------------------------------------------------------------------

    async def remove(self, record_id: str, *, once: str | None = None) -> Data | None:
        """Delete the record; returns the data it held, or None when there was none."""
        _, flat = await self._write("remove", self._token(once), check_record_id(record_id), [], [])
        return None if flat is None else decode_data(flat)

    async def remove_by_association(self, association: AssociationRecord,
                                    *, once: str | None = None) -> list[Data]:
        return await self.remove_by_associations([association], once=once)

    async def remove_by_associations(self, associations: Iterable[AssociationRecord],
                                     *, once: str | None = None) -> list[Data]:
        """Delete every record that has all these associations; returns their data."""
        names = check_associations(associations)
        _, flat = await self._write("remove_assoc", self._token(once), "-", names, [])
        return [decode_data(flat[i + 1]) for i in range(0, len(flat), 2)]

    # -- read-modify-write --------------------------------------------------------------------

    async def increment(self, record_id: str, field: str, by: int = 1, upsert: bool = False,
                        *, once: str | None = None) -> int:
        """Add `by` to the integer in top-level `field` (absent counts as 0); returns the new value."""
        _, pairs = await self._write("incr", self._token(once), check_record_id(record_id), [], [],
                                     upsert=upsert, field=field, by=by)
        return int(pairs[1]) if pairs and pairs[1] is not None else 0

    async def increment_by_association(self, association: AssociationRecord, field: str, by: int = 1,
                                       upsert: bool = True, *, once: str | None = None) -> dict[str, int]:
        return await self.increment_by_associations([association], field, by, upsert, once=once)

    async def increment_by_associations(self, associations: Iterable[AssociationRecord], field: str,
                                        by: int = 1, upsert: bool = True,
                                        *, once: str | None = None) -> dict[str, int]:
        """Increment `field` of every record with all these associations (creating one when there
        is none and `upsert`); returns record id -> new value."""
        names = check_associations(associations)
        token = self._token(once)
        _, pairs = await self._write("incr_assoc", token, self._new_id(token), names, [], upsert=upsert,
                                     field=field, by=by)
        return {pairs[i].decode(): int(pairs[i + 1]) for i in range(0, len(pairs), 2)
                if pairs[i + 1] is not None}

    async def modify(self, record_id: str, change: Callable[[Data], Mapping[str, Any]],
                     upsert: bool = False, *, once: str | None = None,
                     attempts: int = MODIFY_ATTEMPTS) -> Data:
        """Optimistic read-modify-write: `change(data)` returns the new data, which is written only
        if nobody wrote the record in between; otherwise it runs again on the fresh data.
        `change` may run several times, so it must not have side effects. Returns the data written."""
        check_record_id(record_id)
        token = self._token(once)
        delay = 0.001
        for _ in range(attempts):
            found = await self._read("ids", [record_id])
            if not found and not upsert:
                raise AppRecordNotFound(f"app {self.app} has no record {record_id!r}")
            revision = found[0].revision if found else 0
            new = dict(change(dict(found[0].data) if found else {}))
            try:
                applied, _ = await self._write("update", token, record_id, [], encode_data(new),
                                               upsert=upsert, expect=revision)
            except _Conflict:
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.05)
                continue
            if not applied:
                return await self.read(record_id) or {}
            return new
        raise AppUpdateConflict(f"app {self.app}: record {record_id!r} changed under {attempts} "
                                "attempts in a row")

    async def record_failure(self, fields: Mapping[str, str | bytes | int], *, once: str | None = None,
                             keep: int = DEAD_LETTERS_KEPT) -> None:
        """Append a dead letter to the app's stream (about the newest `keep` are kept); under a once
        token, a failure recorded before is not recorded again."""
        flat: list[bytes | str] = []
        for key, value in fields.items():
            flat += [key, value if isinstance(value, bytes) else str(value)]
        await self._write("dead", self._token(once), "-", [], flat, by=keep, field="-")

    # -- plumbing -----------------------------------------------------------------------------

    def _token(self, once: str | None) -> str | None:
        if once is not None:
            return once
        if self.scope is None:
            return None
        self._writes += 1
        return f"{self.scope}#{self._writes}"

    def _new_id(self, token: str | None) -> str:
        # Under a once token the id is derived from it, so a replay names the same record.
        if token is None:
            return new_record_id()
        return hashlib.blake2b(token.encode(), digest_size=12).hexdigest()

    async def _write(self, op: str, token: str | None, record_id: str, associations: list[str],
                     flat: list[bytes | str], *, upsert: bool = False, expect: int | None = None,
                     field: str = "", by: int = 0) -> tuple[bool, Any]:
        if op.startswith("incr"):
            if type(field) is not str or not field:
                raise ValidationError(f"the field to increment is a non-empty string, not {field!r}")
            if type(by) is not int or not -(2**63) <= by < 2**63:
                raise ValidationError(f"an increment is a 64-bit integer, not {by!r}")
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest() if token is not None else b""
        args: list[Any] = [self.keys.names, op, digest, self.window, record_id, int(upsert),
                           "" if expect is None else expect, len(associations), len(flat) // 2,
                           field, by, *associations, *flat]
        try:
            applied, result = await self._scripts.write(keys=[self.keys.ids], args=args)
        except ResponseError as exc:
            text = str(exc)
            if text.startswith("CONFLICT"):
                raise _Conflict(text) from exc
            if text.startswith("NOTFOUND"):
                raise AppRecordNotFound(f"app {self.app} has no record {record_id!r}") from exc
            if text.startswith("EXISTS"):
                raise AppRecordExists(f"app {self.app} has a record {record_id!r} already") from exc
            if text.startswith("NOTINT"):
                raise ValidationError(f"app {self.app}: cannot increment {text[7:]}") from exc
            raise
        return bool(applied), result


class _Conflict(Exception):
    """The record's revision moved between modify's read and its write (retried inside)."""
