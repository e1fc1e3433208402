"""The msgstate client SDK: register states, send responses, read summaries, watch changes,
mint read tokens for the HTTP API.

    from streams.sdk import CRDT_TYPES, Client, MessageTypeModel, custom_states, mint_token
"""

from streams.engine.signing import SigningKey, parse_key
from streams.sdk.client import AsyncClient, Client
from streams.sdk.events import CHANGE, SEND_FAILED, SENDING, ChangeEvent, SendFailedEvent, SendingEvent
from streams.sdk.ids import new_response_id
from streams.sdk.model import MessageTypeModel
from streams.sdk.publisher import Delivery, DeliveryFuture, Publisher, record_key
from streams.sdk.scheduling import AsyncioScheduler, ManualScheduler, ThreadScheduler
from streams.sdk.states import CRDT_TYPES, StateRegistry, custom_states, export_registry, registry_json
from streams.sdk.tokens import mint_token

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
