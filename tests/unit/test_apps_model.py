"""App persistence records and app loading: the pure parts."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstate.schemas.exceptions import ConfigError, ValidationError
from msgstate.streams.apps.host import handlers_of, load_apps
from msgstate.streams.apps.message_counter import MessageCounter
from msgstate.streams.apps.persistence_model import (
    AssociationModel,
    AssociationRecord,
    check_associations,
    decode_data,
    encode_data,
)
from msgstate.streams.storage.layout import AppKeys
from msgstate.workers.services.apps_worker import apps_from_env

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                             allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), JSON, max_size=8))
def test_data_survives_the_hash_layout(data: dict[str, object]) -> None:
    flat = encode_data(data)
    raw = [item if isinstance(item, bytes) else item.encode() for item in flat]
    assert decode_data(raw) == data
    # An integer field is stored as Redis writes integers, so HINCRBY works on it.
    for (key, value), stored in zip(data.items(), raw[1::2], strict=True):
        if type(value) is int:
            assert stored == str(value).encode(), key


def test_association_models_are_rocket_chats() -> None:
    assert [m.value for m in AssociationModel] == [
        "room", "discussion", "message", "livechat-message", "user", "file", "misc", "video-conference"]
    assert AssociationRecord.parse("video-conference:vc:1") == AssociationRecord(
        AssociationModel.VIDEO_CONFERENCE, "vc:1")
    assert str(AssociationRecord("room", "GENERAL")) == "room:GENERAL"  # type: ignore[arg-type]
    a, b = AssociationRecord(AssociationModel.ROOM, "r"), AssociationRecord(AssociationModel.USER, "u")
    assert check_associations([a, b, a]) == ["room:r", "user:u"]
    for bad in ("room", "chat:x", "room:", ":x"):
        with pytest.raises(ValidationError):
            AssociationRecord.parse(bad)
    with pytest.raises(ValidationError, match="at most 32"):
        check_associations(AssociationRecord(AssociationModel.MISC, str(i)) for i in range(33))
    with pytest.raises(ValidationError, match="AssociationRecord"):
        check_associations(["room:r"])  # type: ignore[list-item]


def test_data_must_be_a_small_json_object() -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        encode_data([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not JSON"):
        encode_data({"a": {1, 2}})
    with pytest.raises(ValidationError, match="not JSON"):
        encode_data({"a": 2**64})
    assert len(orjson.dumps({"a": "x" * 65_000})) <= 65_536 and encode_data({"a": "x" * 65_000})


def test_every_key_of_an_app_shares_its_hash_tag() -> None:
    keys = AppKeys("ms", "message-counter")
    for key in (keys.ids, keys.record("r1"), keys.links("r1"), keys.association("room:GENERAL"),
                keys.revisions, keys.dead):
        assert key.startswith("ms:app:{message-counter}:")


def test_apps_load_from_entry_points_and_from_specs() -> None:
    installed = load_apps(None)
    assert isinstance(installed["message-counter"], MessageCounter)
    assert list(apps_from_env({})) == list(installed)
    named = apps_from_env({"MSGSTATE_APPS": "msgstate.streams.apps.message_counter:MessageCounter, "})
    assert list(named) == ["message-counter"]
    assert handlers_of(named["message-counter"]) == ["execute_post_message_sent"]
    assert apps_from_env({"MSGSTATE_APPS": ""}) == {}
    for spec, says in [("nocolon", "module:attribute"), ("no.such:App", "cannot load"),
                       ("msgstate.streams.apps.message_counter:Nope", "cannot load"),
                       ("msgstate.streams.apps.message_counter:MessageCounter,msgstate.streams.apps.message_counter:"
                        "MessageCounter", "two apps")]:
        with pytest.raises(ConfigError, match=says):
            apps_from_env({"MSGSTATE_APPS": spec})
