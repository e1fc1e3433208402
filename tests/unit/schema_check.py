"""Validating against the shipped JSON Schemas, with msgstate's two lexical rules.

A plain draft 2020-12 validator sees numbers, not how they were written, and
code points, not bytes. The rules JSON Schema cannot state (see
schemas/json_schema.py) are added here: integers are Python ints only (a
parsed `1.0` is a float), and `x-maxUtf8Bytes`, `x-maxDepth`,
`x-maxCanonicalBytes` and `x-uniqueEncodings` are enforced.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError, validators

from msgstate.schemas.json_schema import load


def _max_utf8_bytes(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and len(instance.encode("utf-8")) > limit:
        yield ValidationError(f"{instance[:20]!r}... is over {limit} UTF-8 bytes")


def _depth(instance: Any) -> int:
    if isinstance(instance, dict):
        return 1 + max(map(_depth, instance.values()), default=0)
    if isinstance(instance, list):
        return 1 + max(map(_depth, instance), default=0)
    return 0


def _max_depth(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if _depth(instance) > limit:
        yield ValidationError(f"the value nests deeper than {limit} levels")


def _max_canonical_bytes(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, list | dict):
        try:
            size = len(orjson.dumps(instance, option=orjson.OPT_SORT_KEYS))
        except TypeError:  # too deep or out of range for orjson: other keywords say why
            return
        if size > limit:
            yield ValidationError(f"the value's canonical encoding is over {limit} bytes")


def _unique_encodings(
    validator: Any, unique: bool, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if unique and isinstance(instance, list):
        try:
            encodings = [orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in instance]
        except TypeError:
            return
        if len(set(encodings)) < len(encodings):
            yield ValidationError("the members are not distinct")


StrictValidator = validators.extend(
    Draft202012Validator,
    validators={
        "x-maxUtf8Bytes": _max_utf8_bytes,
        "x-maxDepth": _max_depth,
        "x-maxCanonicalBytes": _max_canonical_bytes,
        "x-uniqueEncodings": _unique_encodings,
    },
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, instance: type(instance) is int
    ),
)


@cache
def validator(name: str) -> Any:
    return StrictValidator(load(name))


def is_valid(name: str, instance: Any) -> bool:
    return bool(validator(name).is_valid(instance))


def check(name: str, instance: Any) -> None:
    validator(name).validate(instance)
