"""The message counter: an app that counts every chat message, exactly, under `misc:message-count`.

    msgstate apps read message-counter --association misc:message-count
"""

from __future__ import annotations

from msgstate.schemas.chat import ChatMessage
from msgstate.streams.apps.persistence import AppPersistence, PersistenceRead
from msgstate.streams.apps.persistence_model import AssociationModel, AssociationRecord

COUNT = AssociationRecord(AssociationModel.MISC, "message-count")


class MessageCounter:
    name = "message-counter"

    async def execute_post_message_sent(self, message: ChatMessage, read: PersistenceRead,
                                        persistence: AppPersistence) -> None:
        # One atomic HINCRBY; the host's once token makes a re-delivered message count once.
        await persistence.increment_by_association(COUNT, "count")
