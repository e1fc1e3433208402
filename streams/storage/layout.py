"""Where msgstate keeps things in Redis: every key name and hash field is made here, and only
here. Lua scripts and the compiled engine receive key names (or, for the apps, prefixes) made
by this module; a decider names a state key by a `KeyRef` (kind, message id, part id), which
`Keys.state` turns into the key of the message's partition.

Every key a round touches carries the hash tag of its input partition, so that a round's keys
live on one Redis Cluster slot, on one master:

    <prefix>:{<tag of p>}:fence                       hash  "token" -> assignment token,
                                                            "offset" -> last applied
    <prefix>:{<tag of p>}:outbox                      list  outputs persisted, not yet acknowledged
    <prefix>:{<tag of p>}:{<message id>}:meta:<part>  hash  "v" -> version, "t:<name>" -> type
    <prefix>:{<tag of p>}:{<message id>}:vals:<part>  hash  "<name>\\0<identity>" -> holding (JSON)
    <prefix>:{<tag of p>}:{<message id>}:tally:<part> hash  "<name>\\0<value JSON>" -> count
    <prefix>:{<tag of p>}:{<message id>}:ids          list  response ids taken, oldest first (dedupe memory)
    <prefix>:{<tag of p>}:{<message id>}:msg          hash  "deleted" -> "1" once deleted (kept for good),
                                                            "p:<part>" -> "1" per part with state
    <prefix>:{<tag of p>}:idx:<identity>              hash  "<name>\\0<len(part)>:<part><message>" -> "1"
                                                            per state the identity holds a value of,
                                                            in p's messages
    <prefix>:{<tag of p>}:erasures                    hash  "<erasure id>" -> "1" per erasure taken

The identity index and the erasure ids are per partition: an erasure is published to every
partition, and each partition's holder erases in the messages it holds. A `KeyRef` of a
partition's own key (`ERASURES`, an `INDEX` read) names the message id "": it is in the round's
only partition (a round holding an erasure is one partition).

A message lives in the partition its records are keyed to: Kafka's default partitioner, murmur2
of the message id, over the topic's partitions, which is how readers find it. Only the first
braces of a key are its hash tag; braces and `%` in a message id are percent-escaped so that
the id's own braces close nothing. The tag of partition p is `<topic>/<p>`, or `<topic>/<p>~<n>`
with the least n that puts it in the p-th of as many equal slot ranges as there are
partitions: a cluster's masters own equal slot ranges, so the partitions spread evenly over
them (12 partitions over 3 masters: 4 each).

Apps and analytics (one hash tag each, so their scripts run on Redis Cluster too):

    <prefix>:app:{<app>}:ids | rev | done | seq | dead | rec:<id> | links:<id> | assoc:<model:id>
    <prefix>:{analytics}:seen:<event id> | names:<minute> | values:<minute> | messages:<minute>
                       | removed:<minute>
    <prefix>:apps:invalid                  stream  input records no app could be given
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import orjson
from aiokafka.partitioner import murmur2
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from msgstate.streams.engine.state import Held, PartMeta

# The kinds of a message's state keys, as a `KeyRef` names them.
META, VALUES, TALLY, SEEN = "meta", "vals", "tally", "ids"
STATE_KINDS = (META, VALUES, TALLY, SEEN)
# v1.1: per message, its deletion mark and part ids; per partition, each identity's index
# (the ref's third item is the identity) and the erasure ids taken.
MESSAGE, INDEX, ERASURES = "msg", "idx", "erasures"
# (kind, message id, part id; "" for SEEN and MESSAGE, which are per message; the identity for
# INDEX)
KeyRef = tuple[str, str, str]

VERSION_FIELD = b"v"
TYPE_FIELD_PREFIX = b"t:"
DELETED_FIELD = "deleted"
# The value of a field whose presence is its meaning (an index entry, a part id): not empty,
# which the state changelog reads as a field gone.
MARK = "1"
PART_FIELD_PREFIX = "p:"


def _escaped(text: str) -> str:
    if "%" in text or "{" in text or "}" in text:
        return text.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return text


@lru_cache(maxsize=4096)
def partition_tag(topic: str, partition: int, partitions: int) -> str:
    """The hash tag of an input partition: in the partition-th of `partitions` equal slot ranges."""
    low = partition * REDIS_CLUSTER_HASH_SLOTS // partitions
    high = (partition + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
    tag, n = f"{_escaped(topic)}/{partition}", 0
    while not low <= key_slot(tag.encode()) < high:
        n += 1
        tag = f"{_escaped(topic)}/{partition}~{n}"
    return tag


@lru_cache(maxsize=100_000)
def _hash(message_id: str) -> int:
    # Chat traffic repeats message ids (hot messages); murmur2 here is pure Python.
    return int(murmur2(message_id.encode())) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one deployment: its prefix, and its input topic with its partition count."""

    prefix: str
    topic: str = "msgstate.responses"
    partitions: int = 12
    # Each partition's "<prefix>:{<tag>}:", made once: a round names thousands of keys.
    _heads: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix may not hold braces: {self.prefix!r}")
        if self.partitions < 1:
            raise ValueError("a topic has at least one partition")
        heads = tuple(f"{self.prefix}:{{{self.tag(p)}}}:" for p in range(self.partitions))
        object.__setattr__(self, "_heads", heads)

    def partition_of(self, message_id: str) -> int:
        """The partition a message's records are keyed to (Kafka's default partitioner)."""
        return _hash(message_id) % self.partitions

    def tag(self, partition: int) -> str:
        return partition_tag(self.topic, partition, self.partitions)

    def state(self, ref: KeyRef, partition: int | None = None) -> str:
        """The key a decider's `KeyRef` names, in the message's partition (by default the one
        its id is keyed to)."""
        kind, message_id, part_id = ref
        if partition is None:
            partition = self.partition_of(message_id)
        if kind == INDEX:
            return f"{self._heads[partition]}{INDEX}:{part_id}"
        if kind == ERASURES:
            return f"{self._heads[partition]}{ERASURES}"
        base = f"{self._heads[partition]}{{{_escaped(message_id)}}}"
        if kind in (SEEN, MESSAGE):
            return f"{base}:{kind}"
        if kind not in STATE_KINDS:
            raise ValueError(f"unknown kind of state key {kind!r}")
        return f"{base}:{kind}:{part_id}"

    def meta(self, message_id: str, part_id: str) -> str:
        return self.state((META, message_id, part_id))

    def values(self, message_id: str, part_id: str) -> str:
        return self.state((VALUES, message_id, part_id))

    def tally(self, message_id: str, part_id: str) -> str:
        return self.state((TALLY, message_id, part_id))

    def seen(self, message_id: str) -> str:
        return self.state((SEEN, message_id, ""))

    def message(self, message_id: str) -> str:
        return self.state((MESSAGE, message_id, ""))

    def index(self, partition: int, identity_id: str) -> str:
        return self.state((INDEX, "", identity_id), partition)

    def erasures(self, partition: int) -> str:
        return self.state((ERASURES, "", ""), partition)

    def head(self, partition: int) -> str:
        """What every key of the partition starts with: `<prefix>:{<tag>}:`."""
        return self._heads[partition]

    def fence(self, partition: int) -> str:
        return f"{self._heads[partition]}fence"

    def outbox(self, partition: int) -> str:
        return f"{self._heads[partition]}outbox"

    def apps_invalid(self) -> str:
        return f"{self.prefix}:apps:invalid"

    def slot_map(self) -> list[tuple[int, str, int]]:
        """(partition, tag, Redis Cluster slot) of every partition."""
        return [(p, self.tag(p), key_slot(self.tag(p).encode())) for p in range(self.partitions)]


@dataclass(frozen=True, slots=True)
class AppKeys:
    """One app's keys, all under the app's hash tag."""

    prefix: str
    app: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:app:{{{self.app}}}:"

    @property
    def ids(self) -> str:
        return self.base + "ids"

    @property
    def revisions(self) -> str:
        return self.base + "rev"

    @property
    def done(self) -> str:
        return self.base + "done"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def dead(self) -> str:
        return self.base + "dead"

    @property
    def record_prefix(self) -> str:
        return self.base + "rec:"

    @property
    def links_prefix(self) -> str:
        return self.base + "links:"

    @property
    def association_prefix(self) -> str:
        return self.base + "assoc:"

    @property
    def names(self) -> bytes:
        """The key names and prefixes the app scripts take (streams/lua/app_*.lua), as JSON."""
        return orjson.dumps({"rev": self.revisions, "done": self.done, "seq": self.seq,
                             "dead": self.dead, "rec": self.record_prefix,
                             "links": self.links_prefix, "assoc": self.association_prefix})

    def record(self, record_id: str) -> str:
        return self.record_prefix + record_id

    def links(self, record_id: str) -> str:
        return self.links_prefix + record_id

    def association(self, association: str) -> str:
        return self.association_prefix + association


@dataclass(frozen=True, slots=True)
class AnalyticsKeys:
    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{analytics}}"

    def seen(self, event_id: str) -> str:
        return f"{self.base}:seen:{event_id}"

    def names(self, minute: int) -> str:
        return f"{self.base}:names:{minute}"

    def values(self, minute: int) -> str:
        return f"{self.base}:values:{minute}"

    def messages(self, minute: int) -> str:
        return f"{self.base}:messages:{minute}"

    def removed(self, minute: int) -> str:
        return f"{self.base}:removed:{minute}"


# -- hash fields and values ----------------------------------------------------------------


def state_ref(rest: str) -> KeyRef | None:
    """The `KeyRef` of a message's state key given without its partition's head (`Keys.head`);
    None for the partition's own keys (fence, outbox) and keys msgstate does not make."""
    if not rest.startswith("{") or "}" not in rest:
        return None
    escaped, _, tail = rest[1:].partition("}:")
    kind, _, part_id = tail.partition(":")
    if kind not in STATE_KINDS and kind != MESSAGE:
        return None
    message_id = escaped.replace("%7D", "}").replace("%7B", "{").replace("%25", "%")
    return kind, message_id, part_id


def value_field(name: str, identity_id: str) -> bytes:
    # Names are ASCII without NUL (SPEC section 2), so the first NUL splits the field.
    return name.encode() + b"\0" + identity_id.encode()


def tally_field(name: str, encoded: bytes) -> bytes:
    return name.encode() + b"\0" + encoded


def split_field(field: bytes) -> tuple[str, bytes]:
    """`<name>\\0<rest>` -> (name, rest)."""
    name, _, rest = field.partition(b"\0")
    return name.decode(), rest


def index_field(message_id: str, part_id: str, name: str) -> str:
    """A state's field in an identity's index. Short, so that Redis keeps a small index hash
    as a listpack (fields of at most 64 bytes); unambiguous, though ids may hold any character:
    a name holds no NUL, and the part id's length says where the message id starts."""
    return f"{name}\0{len(part_id)}:{part_id}{message_id}"


def split_index_field(field: bytes) -> tuple[str, str, str]:
    """(message id, part id, name) of an index field."""
    name, _, rest = field.decode().partition("\0")
    length, _, ids = rest.partition(":")
    return ids[int(length):], ids[:int(length)], name


def part_field(part_id: str) -> str:
    return PART_FIELD_PREFIX + part_id


def encode_held(held: Held) -> bytes:
    # A Set is stored as its JSON array of members; any other value as its own encoding.
    return held if isinstance(held, bytes) else b"[" + b",".join(held) + b"]"


def decode_held(raw: bytes, kind: str) -> Held:
    """A stored holding of a state of that type: a Set's members, or one value (which may be
    an array itself, SPEC v1.1)."""
    if kind != "Set":
        return raw
    return tuple(orjson.dumps(member) for member in orjson.loads(raw))


def decode_meta(raw: Mapping[bytes, bytes]) -> PartMeta:
    meta = PartMeta(int(raw.get(VERSION_FIELD, b"0")))
    for name, value in raw.items():
        if name.startswith(TYPE_FIELD_PREFIX):
            meta.types[name[len(TYPE_FIELD_PREFIX):].decode()] = value.decode()
    return meta
