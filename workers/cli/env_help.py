"""What a long-running command's --help says about where it connects: the variables it reads,
their defaults (from `Settings`), and where the rest are documented."""

from __future__ import annotations

import inspect

from msgstate.workers.config import Settings

OPERATIONS_DOC = "docs/operations.md"

_DEFAULTS = Settings()

VARIABLES = {
    "MSGSTATE_KAFKA": f"Kafka bootstrap servers, host:port[,host:port] (default {_DEFAULTS.kafka})",
    "MSGSTATE_REDIS": f"Redis URL (default {_DEFAULTS.redis})",
    "MSGSTATE_PARTITIONS": "partitions of the topics it creates when they are missing "
                           f"(default {_DEFAULTS.partitions})",
    "MSGSTATE_APP_ID": f"consumer group of the state workers (default {_DEFAULTS.app_id})",
    "MSGSTATE_HTTP_HOST": f"address to listen on (default {_DEFAULTS.http_host})",
    "MSGSTATE_HTTP_PORT": f"port to listen on (default {_DEFAULTS.http_port})",
    "MSGSTATE_HTTP_TOKEN_KEYS": "kid:base64secret,... keys of the read tokens (unset: loopback only)",
    "MSGSTATE_KEY_PREFIX": f"prefix of msgstate's Redis keys (default {_DEFAULTS.key_prefix})",
    "MSGSTATE_APPS": "module:attr,... of the installed apps (default: the msgstate.apps entry points)",
    "MSGSTATE_REGISTRY": 'state-type registry, JSON: name -> type or {"type", "max_values"} '
                         "(default none; --registry FILE instead)",
    "MSGSTATE_ANALYTICS_RETENTION": "seconds the per-minute counts are kept "
                                    f"(default {_DEFAULTS.analytics_retention})",
}


def environment_help(*names: str) -> str:
    """A help paragraph (kept as it is by click) naming `names` with their meaning and default,
    then one line pointing at the operations guide for every other setting."""
    width = max(len(name) for name in names)
    rows = [f"  {name:<{width}}  {VARIABLES[name]}" for name in names]
    return "\n".join(["\b", "Where it connects, from the environment:", *rows]) + (
        f"\n\nThe other MSGSTATE_* settings (topic and key prefixes, TLS and SASL, signing keys, "
        f"log format, ...) are described in {OPERATIONS_DOC}.")


def with_environment(text: str, *names: str) -> str:
    """A command's help: `text` (a docstring: its indentation is removed), then what
    `environment_help` says."""
    return f"{inspect.cleandoc(text)}\n\n{environment_help(*names)}"
