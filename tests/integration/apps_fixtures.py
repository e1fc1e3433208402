"""Apps the apps-host tests install through MSGSTATE_APPS."""

from __future__ import annotations

from typing import Any

from msgstate.schemas.chat import ChatMessage
from msgstate.streams.apps.persistence import AppPersistence, PersistenceRead
from msgstate.streams.apps.persistence_model import AssociationModel, AssociationRecord

COUNT = AssociationRecord(AssociationModel.MISC, "message-count")
CHANGES = AssociationRecord(AssociationModel.MISC, "changes")


class NaiveCounter:
    """Reads the count, then writes count + 1: two steps, so concurrent instances lose updates."""

    name = "naive-counter"

    async def execute_post_message_sent(self, message: ChatMessage, read: PersistenceRead,
                                        persistence: AppPersistence) -> None:
        found = await read.read_by_association(COUNT)
        count = max((d["count"] for d in found), default=0)
        await persistence.update_by_association(COUNT, {"count": count + 1}, upsert=True)


class Flaky:
    """Counts messages, but fails on every message whose text says "boom"."""

    name = "flaky"

    def execute_post_message_sent(self, message: ChatMessage, read: PersistenceRead,
                                  persistence: AppPersistence) -> Any:
        if "boom" in message.text:
            raise ValueError(f"boom in {message.id}")
        return persistence.increment_by_association(COUNT, "count")


class StateWatcher:
    """Counts the summary changes of each chat message, and the votes per value."""

    name = "state-watcher"

    async def execute_post_message_state_changed(self, event: dict[str, Any], read: PersistenceRead,
                                                 persistence: AppPersistence) -> None:
        message = AssociationRecord(AssociationModel.MESSAGE, event["message_id"])
        # By both: a lookup by the message alone would also match the vote records below.
        await persistence.increment_by_associations([message, CHANGES], "changes")
        if event["new"] is not None:
            vote = AssociationRecord(AssociationModel.MISC, f"{event['name']}={event['new']}")
            await persistence.increment_by_associations([message, vote], "votes")
