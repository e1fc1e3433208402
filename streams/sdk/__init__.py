"""The msgstate client SDK: register states, send responses, read summaries, watch changes,
mint read tokens for the HTTP API.

    from msgstate.streams.sdk import CRDT_TYPES, Client, MessageTypeModel, custom_states, mint_token
"""

from msgstate.streams.engine.signing import SigningKey, parse_key
from msgstate.streams.sdk.client import AsyncClient, Client
from msgstate.streams.sdk.events import (
    CHANGE,
    SEND_FAILED,
    SENDING,
    ChangeEvent,
    SendFailedEvent,
    SendingEvent,
)
from msgstate.streams.sdk.ids import new_response_id
from msgstate.streams.sdk.model import MessageTypeModel
from msgstate.streams.sdk.publisher import Delivery, DeliveryFuture, Publisher, record_key
from msgstate.streams.sdk.scheduling import AsyncioScheduler, ManualScheduler, ThreadScheduler
from msgstate.streams.sdk.states import (
    CRDT_TYPES,
    StateRegistry,
    custom_states,
    export_registry,
    registry_json,
)
from msgstate.streams.sdk.tokens import mint_token

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
    "custom_states",
    "export_registry",
    "mint_token",
    "new_response_id",
    "parse_key",
    "record_key",
    "registry_json",
]
