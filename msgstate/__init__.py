"""msgstate: typed per-user state on chat messages, from Kafka to Redis.

The client SDK's names are here, so that a chat backend writes

    from msgstate import CRDT_TYPES, AsyncClient, Client, MessageTypeModel, mint_token

The packages beneath: `msgstate.schemas` (the wire records), `msgstate.streams` (the engine, the
round protocol, the store, the SDK, the apps platform), `msgstate.workers` (the services, the
CLI, the tools) and `msgstate.bench` (the benchmarks). The SDK is imported on first use, so that
the workers and the CLI start without it.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from msgstate.streams.sdk import (
        CHANGE,
        CRDT_TYPES,
        SEND_FAILED,
        SENDING,
        AsyncClient,
        AsyncioScheduler,
        ChangeEvent,
        Client,
        Delivery,
        DeliveryFuture,
        ManualScheduler,
        MessageTypeModel,
        Publisher,
        SendFailedEvent,
        SendingEvent,
        SigningKey,
        StateRegistry,
        ThreadScheduler,
        custom_states,
        export_registry,
        mint_token,
        new_response_id,
        parse_key,
        record_key,
        registry_json,
    )

try:
    __version__ = version("msgstate")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CHANGE",
    "CRDT_TYPES",
    "SENDING",
    "SEND_FAILED",
    "AsyncClient",
    "AsyncioScheduler",
    "ChangeEvent",
    "Client",
    "Delivery",
    "DeliveryFuture",
    "ManualScheduler",
    "MessageTypeModel",
    "Publisher",
    "SendFailedEvent",
    "SendingEvent",
    "SigningKey",
    "StateRegistry",
    "ThreadScheduler",
    "__version__",
    "custom_states",
    "export_registry",
    "mint_token",
    "new_response_id",
    "parse_key",
    "record_key",
    "registry_json",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(import_module("msgstate.streams.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'msgstate' has no attribute {name!r}")
