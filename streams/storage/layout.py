"""Where msgstate keeps things in Redis.

Every key of one message carries the message id as its hash tag, so a message's
keys live on one Redis Cluster slot:

    <prefix>:{<message id>}:meta:<part>    hash  "v" -> version, "t:<name>" -> type
    <prefix>:{<message id>}:vals:<part>    hash  "<name>\\0<identity>" -> holding (JSON)
    <prefix>:{<message id>}:tally:<part>   hash  "<name>\\0<value JSON>" -> count
    <prefix>:{<message id>}:ids            list  response ids taken, oldest first (dedupe memory)

Per input partition (hash-tagged by topic and partition):

    <prefix>:{<topic>/<partition>}:fence   hash  "token" -> assignment token, "offset" -> last applied
    <prefix>:{<topic>/<partition>}:outbox  list  records persisted but not yet acknowledged by Kafka

Braces and `%` in a message id are percent-escaped so that the tag is the whole id.
"""

from __future__ import annotations

from dataclasses import dataclass


def _tag(text: str) -> str:
    return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def message(self, message_id: str) -> str:
        return f"{self.prefix}:{{{_tag(message_id)}}}"

    def meta(self, message_id: str, part_id: str) -> str:
        return f"{self.message(message_id)}:meta:{part_id}"

    def values(self, message_id: str, part_id: str) -> str:
        return f"{self.message(message_id)}:vals:{part_id}"

    def tally(self, message_id: str, part_id: str) -> str:
        return f"{self.message(message_id)}:tally:{part_id}"

    def seen(self, message_id: str) -> str:
        return f"{self.message(message_id)}:ids"

    def fence(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:{{{_tag(topic)}/{partition}}}:fence"

    def outbox(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:{{{_tag(topic)}/{partition}}}:outbox"


def value_field(name: str, identity_id: str) -> bytes:
    # Names are ASCII without NUL (SPEC section 2), so the first NUL splits the field.
    return name.encode() + b"\0" + identity_id.encode()


def tally_field(name: str, encoded: bytes) -> bytes:
    return name.encode() + b"\0" + encoded


VERSION_FIELD = b"v"
TYPE_FIELD_PREFIX = b"t:"
