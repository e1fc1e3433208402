"""MessageTypeModel: the base of a message type's model, as in Layer's Web XDK.

    class PollModel(MessageTypeModel):
        def register_all_states(self) -> None:
            self.responses.register_state("poll_choice", CRDT_TYPES.FIRST_WRITER_WINS)

        def parse_model_responses(self) -> None:
            self.my_choice = self.responses.get_state("poll_choice")
"""

from __future__ import annotations

from msgstate.schemas.limits import DEFAULT_PART
from msgstate.schemas.registry import Entry
from msgstate.streams.sdk import validation
from msgstate.streams.sdk.events import CHANGE, ChangeEvent, Emitter
from msgstate.streams.sdk.responses import Responses, Wiring


class MessageTypeModel(Emitter):
    """One (message, part) as seen by one identity: it writes that identity's states."""

    def __init__(self, message_id: str, identity_id: str, part_id: str = DEFAULT_PART,
                 wiring: Wiring | None = None) -> None:
        super().__init__()
        self.message_id = message_id
        self.identity_id = identity_id
        self.part_id = part_id
        # A probe record checks the ids against the wire rules before anything is sent.
        validation.encode_record({"id": "r", "message_id": message_id, "part_id": part_id,
                                  "identity_id": identity_id,
                                  "changes": [{"operation": "add", "type": "LWW", "name": "n",
                                               "value": 0}]})
        self.responses = Responses(self, wiring)
        self.closed = False
        self.register_all_states()

    # -- lifecycle hooks (override) --------------------------------------------------------

    def register_all_states(self) -> None:
        """Register this message type's states with `self.responses.register_state(name, type)`."""

    def parse_model_responses(self) -> None:
        """Derive the model's fields from its responses; called on load and after each change."""

    # -- class-level ------------------------------------------------------------------------

    @classmethod
    def registered_states(cls) -> dict[str, Entry]:
        """The states `register_all_states` registers (without custom_states), no client
        needed, in the registry's written form (a type, or the type with its max_values)."""
        probe = cls.__new__(cls)
        Emitter.__init__(probe)
        probe.message_id, probe.identity_id, probe.part_id = "", "", DEFAULT_PART
        probe.responses = Responses(probe, None)
        probe.register_all_states()
        return probe.responses.own_entries

    # -- events -----------------------------------------------------------------------------

    def changed(self, event: ChangeEvent) -> None:
        """A change event reached this model: re-derive, then tell the listeners."""
        self.parse_model_responses()
        self.trigger(CHANGE, event)

    def close(self) -> None:
        """Send what is pending; stop watching (the client does the latter)."""
        if self.closed:
            return
        self.closed = True
        self.responses.send_response_message()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message_id!r}, {self.identity_id!r}, "
                f"part_id={self.part_id!r})")
