"""Settings, read from `MSGSTATE_*` environment variables at the edges only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from msgstate.schemas.exceptions import ConfigError
from msgstate.schemas.registry import Entry, parse_registry
from msgstate.streams.engine.native_engine import default_engine
from msgstate.streams.engine.replay import ENGINES
from msgstate.streams.engine.signing import Keyring, SigningKey, parse_key
from msgstate.streams.engine.state_cache import CACHE_ENTRIES
from msgstate.streams.storage.client import AsyncRedis, SyncRedis, async_client, sync_client
from msgstate.streams.storage.layout import Keys
from msgstate.workers.kafka_security import KafkaSecurity

# An HS256 key is at least as long as the hash (RFC 7518 section 3.2); `streams.sdk.tokens`
# holds the same bound (not imported: it would load the whole SDK into every command).
MIN_TOKEN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names of SPEC section 1; a prefix keeps parallel deployments (and tests) apart."""

    prefix: str = "msgstate"

    @property
    def responses(self) -> str:
        return f"{self.prefix}.responses"

    @property
    def summary_changes(self) -> str:
        return f"{self.prefix}.summary-changes"

    @property
    def rejections(self) -> str:
        return f"{self.prefix}.rejections"

    @property
    def messages(self) -> str:
        return f"{self.prefix}.messages"

    @property
    def state(self) -> str:
        """The state changelog (SPEC section 7a): compacted, one partition per input partition."""
        return f"{self.prefix}.state"


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    # `redis` names any node of a Redis Cluster; every Redis client is then a cluster client.
    redis_cluster: bool = False
    # After each round, wait until this many replicas of the master hold it (Redis WAIT), for at
    # most `redis_wait_timeout_ms`; 0: no wait (docs/reliability.md weighs it).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 100
    stack_dir: Path = Path(".stack")
    partitions: int = 12
    replication: int = 1
    topics: Topics = field(default_factory=Topics)
    # Prefix of Redis keys, so several deployments can share one Redis.
    key_prefix: str = "ms"
    # The consumer group of the state workers (aiokafka); the apps worker's (a faust app) is
    # `<app_id>-apps`, the analytics consumer's `<app_id>-analytics`.
    app_id: str = "msgstate"
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    # Signing on: the keys whose signatures state workers accept (two during a rotation).
    keyring: Keyring | None = field(default=None, compare=False)
    # The HTTP read API (`msgstate http`): where it listens.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Keys of the API's read tokens, first (the one `msgstate token` signs with) to last; none:
    # reads need no token and the API serves loopback only, unless `http_insecure`.
    http_token_keys: tuple[SigningKey, ...] = field(default=(), repr=False)
    http_insecure: bool = False
    # Open server-sent-event streams: at most this many in all, and per token.
    http_max_streams: int = 1000
    http_max_streams_per_token: int = 10
    # The analytics consumer: how long per-minute counts and remembered event ids live.
    analytics_retention: int = 86_400
    # Port of a state worker's /metrics, /healthz and /readyz; 0 = no endpoint.
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    # How long a state worker may take to stop after SIGTERM (finish the batch, commit, leave).
    shutdown_seconds: float = 20.0
    log_format: str = "json"  # or "text"
    # The state worker's engine: "native" (compiled) or "python" (the reference); "" for the
    # compiled one where it is installed.
    engine: str = ""
    # Entries of a state worker's cache of Redis (docs/operations.md#sizing-the-state-cache).
    cache_entries: int = CACHE_ENTRIES
    # State workers write the state changelog (`msgstate rebuild` restores Redis from it).
    changelog: bool = True
    # The state workers' registry of state types (SPEC section 3): name -> type or
    # {"type", "max_values"}, from MSGSTATE_REGISTRY (JSON) or `msgstate worker --registry`.
    registry: Mapping[str, Entry] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()
        kafka = env.get("MSGSTATE_KAFKA", base.kafka).strip()
        if not kafka:
            raise ConfigError("MSGSTATE_KAFKA is empty: give bootstrap servers as host:port[,host:port]")
        for server in kafka.split(","):
            split_host_port(server, "MSGSTATE_KAFKA")
        redis = env.get("MSGSTATE_REDIS", base.redis).strip()
        redis_port(redis)
        prefix = env.get("MSGSTATE_TOPIC_PREFIX", base.topics.prefix)
        return cls(
            kafka=kafka,
            redis=redis,
            redis_cluster=_choice(env, "MSGSTATE_REDIS_CLUSTER", ("true", "false"),
                                  str(base.redis_cluster).lower()) == "true",
            redis_wait_replicas=_count(env, "MSGSTATE_REDIS_WAIT_REPLICAS", base.redis_wait_replicas),
            redis_wait_timeout_ms=_positive_int(env, "MSGSTATE_REDIS_WAIT_TIMEOUT_MS",
                                                base.redis_wait_timeout_ms),
            stack_dir=Path(env.get("MSGSTATE_STACK_DIR", str(base.stack_dir))),
            partitions=_positive_int(env, "MSGSTATE_PARTITIONS", base.partitions),
            replication=_positive_int(env, "MSGSTATE_REPLICATION", base.replication),
            topics=Topics(prefix),
            key_prefix=env.get("MSGSTATE_KEY_PREFIX", base.key_prefix),
            app_id=env.get("MSGSTATE_APP_ID", base.app_id),
            kafka_security=KafkaSecurity.from_env(env),
            keyring=_keyring(env.get("MSGSTATE_SIGNING_KEYS", "")),
            http_host=env.get("MSGSTATE_HTTP_HOST", base.http_host),
            http_port=_port(env, "MSGSTATE_HTTP_PORT", base.http_port),
            http_token_keys=_token_keys(env.get("MSGSTATE_HTTP_TOKEN_KEYS", "")),
            http_insecure=_flag(env, "MSGSTATE_HTTP_INSECURE", base.http_insecure),
            http_max_streams=_positive_int(env, "MSGSTATE_HTTP_MAX_STREAMS", base.http_max_streams),
            http_max_streams_per_token=_positive_int(env, "MSGSTATE_HTTP_MAX_STREAMS_PER_TOKEN",
                                                     base.http_max_streams_per_token),
            analytics_retention=_positive_int(env, "MSGSTATE_ANALYTICS_RETENTION",
                                              base.analytics_retention),
            metrics_port=_optional_port(env, "MSGSTATE_METRICS_PORT", base.metrics_port),
            metrics_host=env.get("MSGSTATE_METRICS_HOST", base.metrics_host),
            shutdown_seconds=_positive_int(env, "MSGSTATE_SHUTDOWN_SECONDS", int(base.shutdown_seconds)),
            log_format=_choice(env, "MSGSTATE_LOG_FORMAT", ("json", "text"), base.log_format),
            engine=_choice(env, "MSGSTATE_ENGINE", ENGINES, base.engine or default_engine()),
            cache_entries=_positive_int(env, "MSGSTATE_CACHE_ENTRIES", base.cache_entries),
            changelog=_flag(env, "MSGSTATE_CHANGELOG", base.changelog),
            registry=_registry(env.get("MSGSTATE_REGISTRY", "")),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def redis_client(self, **options: Any) -> SyncRedis:
        """A blocking client of this deployment's Redis (or Redis Cluster)."""
        return sync_client(self.redis, cluster=self.redis_cluster, **options)

    def async_redis_client(self, **options: Any) -> AsyncRedis:
        """An asyncio client of this deployment's Redis (or Redis Cluster)."""
        return async_client(self.redis, cluster=self.redis_cluster, **options)

    @property
    def keys(self) -> Keys:
        """The Redis key layout of this deployment."""
        try:
            return Keys(self.key_prefix, self.topics.responses, self.partitions)
        except ValueError as exc:
            raise ConfigError(f"MSGSTATE_KEY_PREFIX: {exc}") from exc

    @property
    def kafka_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka.split(",")]

    def kafka_client(self) -> dict[str, Any]:
        """Bootstrap servers and security options for a kafka-python client."""
        return {"bootstrap_servers": self.kafka_servers, **self.kafka_security.kafka_python()}

    def aiokafka_client(self) -> dict[str, Any]:
        """Bootstrap servers and security options for an aiokafka client."""
        return {"bootstrap_servers": self.kafka_servers, **self.kafka_security.aiokafka()}


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit():
        raise ConfigError(f"{name}={raw!r} is not a whole number (0 or more)")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive_int(env, name, default)
    if value > 65535:
        raise ConfigError(f"{name}={value} is not a TCP port (1-65535)")
    return value


def _keyring(spec: str) -> Keyring | None:
    """`keyid:base64secret[,keyid:base64secret]` → the keyring; empty → signing off."""
    specs = [s for s in spec.split(",") if s.strip()]
    if not specs:
        return None
    try:
        return Keyring.parse(specs)
    except ConfigError as exc:
        raise ConfigError(f"MSGSTATE_SIGNING_KEYS: {exc}") from None


def _token_keys(spec: str) -> tuple[SigningKey, ...]:
    """`kid:base64secret[,kid:base64secret]` → the HTTP API's token keys, in the order given."""
    keys: list[SigningKey] = []
    for text in (s for s in spec.split(",") if s.strip()):
        try:
            key = parse_key(text)
        except ConfigError as exc:
            raise ConfigError(f"MSGSTATE_HTTP_TOKEN_KEYS: {exc}") from None
        if len(key.secret) < MIN_TOKEN_SECRET_BYTES:
            raise ConfigError(f"MSGSTATE_HTTP_TOKEN_KEYS: key {key.key_id}: the secret has "
                              f"{len(key.secret)} bytes; HS256 needs at least {MIN_TOKEN_SECRET_BYTES}")
        if any(k.key_id == key.key_id for k in keys):
            raise ConfigError(f"MSGSTATE_HTTP_TOKEN_KEYS: key id {key.key_id} is given twice")
        keys.append(key)
    return tuple(keys)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={raw!r} is not true or false")
    return raw == "true"


def _optional_port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit() or int(raw) > 65535:
        raise ConfigError(f"{name}={raw!r} is not a port (0 turns it off)")
    return int(raw)


def _registry(text: str) -> dict[str, Entry]:
    if not text.strip():
        return {}
    try:
        return parse_registry(text)
    except ConfigError as exc:
        raise ConfigError(f"MSGSTATE_REGISTRY: {exc}") from exc


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return raw


def split_host_port(server: str, what: str) -> tuple[str, int]:
    host, sep, port = server.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: {server!r} is not host:port")
    return host, int(port)


def redis_port(url: str) -> int:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"MSGSTATE_REDIS={url!r}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"MSGSTATE_REDIS={url!r} is not a redis:// URL")
    return port or 6379


def environment(settings: Settings) -> dict[str, str]:
    """The `MSGSTATE_*` variables that make a child process join the same deployment."""
    return {
        "MSGSTATE_KAFKA": settings.kafka,
        "MSGSTATE_REDIS": settings.redis,
        "MSGSTATE_REDIS_CLUSTER": str(settings.redis_cluster).lower(),
        "MSGSTATE_REDIS_WAIT_REPLICAS": str(settings.redis_wait_replicas),
        "MSGSTATE_REDIS_WAIT_TIMEOUT_MS": str(settings.redis_wait_timeout_ms),
        "MSGSTATE_STACK_DIR": str(settings.stack_dir),
        "MSGSTATE_PARTITIONS": str(settings.partitions),
        "MSGSTATE_REPLICATION": str(settings.replication),
        "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix,
        "MSGSTATE_KEY_PREFIX": settings.key_prefix,
        "MSGSTATE_APP_ID": settings.app_id,
    }
