"""A deliberately naive model of SPEC sections 2-6, written apart from the engine.

It shares no code with `schemas/` or `streams/`: the stdlib json parser, plain
dicts, one record at a time, and every summary recomputed from scratch. Values
are tagged tuples (("str", "1"), ("int", 1), ("bool", True), ("float", "1.0"),
("object", '{"a":1}')) so that Python's 1 == 1.0 == True cannot blur them.
Property tests compare the engine with it.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

INT_LO, INT_HI = -(2**63), 2**63 - 1
NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]+")
TYPES = ["Set", "FWW", "LWW", "LWWN"]
Tagged = tuple[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a double")
    return value


def _has_surrogate(data: Any) -> bool:
    if isinstance(data, str):
        return any(0xD800 <= ord(ch) <= 0xDFFF for ch in data)
    if isinstance(data, list):
        return any(_has_surrogate(item) for item in data)
    if isinstance(data, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in data.items())
    return False


def _float_text(value: float) -> str:
    """A float as orjson writes it: Python's shortest repr, exponent digits unpadded."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))


def canonical(data: Any) -> str:
    """JSON with no whitespace and object keys sorted (stdlib escaping matches orjson's)."""
    if isinstance(data, float):
        return _float_text(data)
    if isinstance(data, list):
        return "[" + ",".join(canonical(item) for item in data) + "]"
    if isinstance(data, dict):
        return "{" + ",".join(json.dumps(key, ensure_ascii=False) + ":" + canonical(data[key])
                              for key in sorted(data)) + "}"
    return json.dumps(data, ensure_ascii=False)


def _data_ok(data: Any, depth: int) -> bool:
    if data is None or isinstance(data, bool | str):
        return True
    if isinstance(data, int):
        return INT_LO <= data <= INT_HI
    if isinstance(data, float):
        return abs(data) < 2.0**63
    if isinstance(data, list | dict):
        items = data.values() if isinstance(data, dict) else data
        return depth <= 16 and all(_data_ok(item, depth + 1) for item in items)
    return False


def tag(value: Any) -> Tagged | None:
    """A valid value, tagged; None when the value is not valid."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value) if INT_LO <= value <= INT_HI else None
    if isinstance(value, str):
        return ("str", value) if len(value.encode("utf-8")) <= 1024 else None
    if isinstance(value, float):
        return ("float", _float_text(value)) if abs(value) < 2.0**63 else None
    if isinstance(value, list | dict):
        text = canonical(value)
        if not _data_ok(value, 1) or len(text.encode()) > 1024:
            return None
        return ("array" if isinstance(value, list) else "object", text)
    return None


def untag(tagged: Tagged) -> Any:
    kind, payload = tagged
    return json.loads(payload) if kind in ("float", "array", "object") else payload


def tally_order(tagged: Tagged) -> tuple[int, Any]:
    """The tie order of SPEC section 4 (v1.1), after the count."""
    kind, payload = tagged
    if kind == "bool":
        return (1 if payload else 0, 0)
    if kind == "int":
        return (2, (payload, 0, ""))
    if kind == "float":
        return (2, (float(payload), 1, payload.encode()))
    if kind == "str":
        return (3, payload)
    return (4 if kind == "array" else 5, payload.encode())


def plain(held: Any) -> Any:
    """A holding as JSON data."""
    if held is None:
        return None
    if isinstance(held, list):
        return [untag(t) for t in held]
    return untag(held)


def text_ok(value: Any, low: int, high: int) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


class NaiveModel:
    def __init__(self, registry: dict[str, Any] | None = None) -> None:
        entries = dict(registry or {})
        self.registry = {n: e if isinstance(e, str) else e["type"] for n, e in entries.items()}
        self.caps = {n: e["max_values"] for n, e in entries.items()
                     if isinstance(e, dict) and "max_values" in e}
        self.deleted: set[str] = set()
        self.erasures: set[str] = set()
        # (message, part) -> {"version", "types" (ordered), "held": {name: {identity: holding}}}
        self.parts: dict[tuple[str, str], dict[str, Any]] = {}
        self.taken: dict[str, list[str]] = {}
        self.events: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []

    # -- whole records -----------------------------------------------------------

    def reject(self, reason: str, record: Any = None, index: Any = None, change: Any = None,
               raw: Any = None) -> None:
        def copied(key: str) -> Any:
            if isinstance(record, dict) and isinstance(record.get(key), str):
                return record[key]
            return None

        self.rejections.append({
            "response_id": copied("id"),
            "message_id": copied("message_id"),
            "identity_id": copied("identity_id"),
            "reason": reason,
            "change_index": index,
            "change": change,
            "raw": raw,
        })

    def feed(self, line: bytes, authentic: bool = True) -> None:
        if len(line) > 65536:
            self.reject("too_large")
            return
        try:
            record = json.loads(line.decode("utf-8"), parse_constant=_reject_constant,
                                parse_float=_finite_float)
            if _has_surrogate(record):
                raise ValueError("lone surrogate")
        except ValueError:
            record = None
            malformed = True
        else:
            malformed = not isinstance(record, dict)
        if malformed:
            self.reject("malformed", raw=base64.b64encode(line).decode())
            return
        kind = record.get("kind", "response")
        if kind == "delete_message":
            valid = self.valid_removal(record, ("id", "message_id", "identity_id"))
        elif kind == "erase_identity":
            valid = self.valid_removal(record, ("id", "identity_id"))
        else:
            valid = kind == "response" and self.valid_record(record)
        if not valid:
            self.reject("invalid", record)
            return
        if not authentic:
            self.reject("unauthenticated", record)
            return
        if kind == "erase_identity":
            if record["id"] not in self.erasures:
                self.erasures.add(record["id"])
                self.erase(record)
            return
        mid = record["message_id"]
        if record["id"] in self.taken.get(mid, []):
            self.reject("duplicate", record)
            return
        if mid in self.deleted:
            self.reject("message_deleted", record)
            return
        self.taken.setdefault(mid, []).append(record["id"])
        if kind == "delete_message":
            self.delete(record)
        else:
            self.apply(record)

    def valid_removal(self, r: dict[str, Any], ids: tuple[str, ...]) -> bool:
        limits = {"id": 128, "message_id": 256, "identity_id": 256}
        if not all(text_ok(r.get(key), 1, limits[key]) for key in ids):
            return False
        if r.get("status_text") is not None and not text_ok(r["status_text"], 0, 4096):
            return False
        sent_at = r.get("sent_at")
        return sent_at is None or (
            isinstance(sent_at, int) and not isinstance(sent_at, bool)
            and INT_LO <= sent_at <= INT_HI
        )

    # -- deletions and erasures ----------------------------------------------------

    def delete(self, r: dict[str, Any]) -> None:
        mid = r["message_id"]
        self.deleted.add(mid)
        for pid in sorted(pid for m, pid in self.parts if m == mid):
            self.remove_from((mid, pid), r, "delete_message", None)

    def erase(self, r: dict[str, Any]) -> None:
        for key in sorted(self.parts):
            if key[0] not in self.deleted:
                self.remove_from(key, r, "erase_identity", r["identity_id"])

    def remove_from(self, key: tuple[str, str], r: dict[str, Any], cause: str,
                    only: str | None) -> None:
        part = self.parts[key]
        removed = sorted(
            (name, ident, held)
            for name, holders in part["held"].items()
            for ident, held in holders.items()
            if only is None or ident == only
        )
        if not removed:
            return
        part["version"] += 1
        for name, ident, held in removed:
            del part["held"][name][ident]
            self.events.append({
                "event_id": f"{key[0]}/{r['id']}/{key[1]}/{name}/{ident}",
                "message_id": key[0],
                "part_id": key[1],
                "response_id": r["id"],
                "identity_id": ident,
                "name": name,
                "type": part["types"][name],
                "old": plain(held),
                "new": None,
                "version": part["version"],
                "status_text": r.get("status_text"),
                "cause": cause,
            })

    def valid_record(self, r: dict[str, Any]) -> bool:
        if not (text_ok(r.get("id"), 1, 128) and text_ok(r.get("message_id"), 1, 256)
                and text_ok(r.get("identity_id"), 1, 256)):
            return False
        if r.get("part_id") is not None and not text_ok(r["part_id"], 1, 128):
            return False
        changes = r.get("changes")
        if not isinstance(changes, list) or not 1 <= len(changes) <= 100:
            return False
        if r.get("status_text") is not None and not text_ok(r["status_text"], 0, 4096):
            return False
        sent_at = r.get("sent_at")
        return sent_at is None or (
            isinstance(sent_at, int) and not isinstance(sent_at, bool)
            and INT_LO <= sent_at <= INT_HI
        )

    # -- the rules ---------------------------------------------------------------

    def change_shape_ok(self, c: Any) -> bool:
        if not isinstance(c, dict):
            return False
        if c.get("operation") not in ("add", "remove"):
            return False
        if c.get("type") not in TYPES or not isinstance(c.get("type"), str):
            return False
        name = c.get("name")
        if not isinstance(name, str) or len(name) > 128 or not NAME_RE.fullmatch(name):
            return False
        if c["operation"] == "add" or c["type"] == "Set":
            return "value" in c and tag(c["value"]) is not None
        if c["type"] == "LWWN":
            return c.get("value") is None or tag(c["value"]) is not None
        return True

    def apply(self, r: dict[str, Any]) -> None:
        mid, ident = r["message_id"], r["identity_id"]
        pid = r.get("part_id") or "root"
        part = self.parts.setdefault((mid, pid), {"version": 0, "types": {}, "held": {}})
        before = copy.deepcopy({name: held.get(ident) for name, held in part["held"].items()})
        order: list[str] = []
        for index, c in enumerate(r["changes"]):
            reason = self.rule(part, ident, c)
            if reason is not None:
                self.reject(reason, r, index, c)
                continue
            if c["name"] not in order:
                order.append(c["name"])
        changed = []
        for name in order:
            old = before.get(name)
            new = part["held"].get(name, {}).get(ident)
            if old != new:
                changed.append((name, old, new))
        if not changed:
            return
        part["version"] += 1
        for name, old, new in changed:
            self.events.append({
                "event_id": f"{mid}/{r['id']}/{name}",
                "message_id": mid,
                "part_id": pid,
                "response_id": r["id"],
                "identity_id": ident,
                "name": name,
                "type": part["types"][name],
                "old": plain(old),
                "new": plain(new),
                "version": part["version"],
                "status_text": r.get("status_text"),
                "cause": "response",
            })

    def rule(self, part: dict[str, Any], ident: str, c: Any) -> str | None:
        """Apply one change to the part; return its rejection reason, if any."""
        if not self.change_shape_ok(c):
            return "invalid_change"
        op, kind, name = c["operation"], c["type"], c["name"]
        types = part["types"]
        if name in types and types[name] != kind:
            return "type_mismatch"
        if name in self.registry and self.registry[name] != kind:
            return "type_mismatch"
        if op == "remove" and kind in ("FWW", "LWW"):
            return "remove_not_allowed"
        holders = part["held"].get(name, {})
        current = holders.get(ident)
        if kind == "FWW" and op == "add" and current is not None:
            return "fww_conflict"
        if name not in types and len(types) >= 64:
            return "limit_exceeded"
        value = tag(c.get("value"))
        if kind == "Set" and op == "add" and value not in (current or []) and \
                len(current or []) >= 256:
            return "limit_exceeded"
        if op == "add" and name in self.caps:
            held = [v for h in holders.values() for v in (h if isinstance(h, list) else [h])]
            if value not in held and len(set(held)) >= self.caps[name]:
                return "limit_exceeded"
        # accepted
        types.setdefault(name, kind)
        holders = part["held"].setdefault(name, {})
        if kind == "Set":
            members = list(current or [])
            if op == "add" and value not in members:
                members.append(value)
            if op == "remove" and value in members:
                members.remove(value)
            new: Any = members or None
        elif op == "add":
            new = value
        elif value is None or value == current:  # an LWWN remove
            new = None
        else:
            new = current
        if new is None:
            holders.pop(ident, None)
        else:
            holders[ident] = new
        return None

    # -- reads -------------------------------------------------------------------

    def summary(self, mid: str, pid: str) -> dict[str, Any]:
        part = self.parts.get((mid, pid), {"version": 0, "types": {}, "held": {}})
        if mid in self.deleted:
            return {"message_id": mid, "part_id": pid, "version": part["version"], "states": {},
                    "deleted": True}
        states = {}
        for name, kind in part["types"].items():
            holders = part["held"].get(name, {})
            counts: dict[Tagged, int] = {}
            for held in holders.values():
                for value in (held if isinstance(held, list) else [held]):
                    counts[value] = counts.get(value, 0) + 1

            def order(entry: tuple[Tagged, int]) -> tuple[int, tuple[int, Any]]:
                return (-entry[1], tally_order(entry[0]))

            states[name] = {
                "type": kind,
                "values": {ident: plain(held) for ident, held in holders.items()},
                "tally": [{"value": untag(v), "count": n} for v, n in sorted(counts.items(),
                                                                              key=order)],
            }
        return {"message_id": mid, "part_id": pid, "version": part["version"], "states": states}

    def summaries(self) -> list[dict[str, Any]]:
        return [self.summary(mid, pid) for mid, pid in sorted(self.parts)
                if self.parts[(mid, pid)]["types"]]
