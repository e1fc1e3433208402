"""Validating against the shipped JSON Schemas, with msgstate's two lexical rules.

A plain draft 2020-12 validator sees numbers, not how they were written, and
code points, not bytes. The two rules JSON Schema cannot state (see
schemas/json_schema.py) are added here: integers are Python ints only (a
parsed `1.0` is a float), and `x-maxUtf8Bytes` is enforced.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from msgstate.schemas.json_schema import load


def _max_utf8_bytes(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and len(instance.encode("utf-8")) > limit:
        yield ValidationError(f"{instance[:20]!r}... is over {limit} UTF-8 bytes")


StrictValidator = validators.extend(
    Draft202012Validator,
    validators={"x-maxUtf8Bytes": _max_utf8_bytes},
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
