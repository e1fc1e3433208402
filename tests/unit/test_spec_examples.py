"""The examples of SPEC sections 2, 4, 5 and 6, verbatim, and the seed scenarios."""

from __future__ import annotations

import orjson

from tests.unit.helpers import add, line, remove, run

FRODO = "layer:///identities/FrodoTheDodo"
SAM = "layer:///identities/Sam"
MESSAGE = "layer:///messages/940de862"

# SPEC section 2, verbatim.
RESPONSE_EXAMPLE = b"""{
  "id": "r-01JD8W7M0Q",
  "message_id": "layer:///messages/940de862",
  "part_id": "root",
  "identity_id": "layer:///identities/FrodoTheDodo",
  "changes": [
    {"operation": "remove", "type": "Set", "name": "favorite_colors", "value": "blue"},
    {"operation": "add",    "type": "LWW", "name": "latest_color",    "value": "red"}
  ],
  "status_text": "Frodo the Dodo has removed blue as a Favorite Color",
  "sent_at": 1732277000123
}"""

# SPEC section 4, verbatim.
SUMMARY_EXAMPLE = b"""{
  "message_id": "layer:///messages/940de862",
  "part_id": "root",
  "version": 2,
  "states": {
    "favorite_colors": {
      "type": "Set",
      "values": {"layer:///identities/FrodoTheDodo": ["red", "green"],
                 "layer:///identities/Sam": ["red"]},
      "tally": [{"value": "red", "count": 2}, {"value": "green", "count": 1}]
    },
    "latest_color": {
      "type": "LWW",
      "values": {"layer:///identities/FrodoTheDodo": "red"},
      "tally": [{"value": "red", "count": 1}]
    }
  }
}"""

# SPEC section 5, verbatim.
EVENT_EXAMPLE = b"""{
  "event_id": "layer:///messages/940de862/r-01JD8W7M0Q/latest_color",
  "message_id": "layer:///messages/940de862",
  "part_id": "root",
  "response_id": "r-01JD8W7M0Q",
  "identity_id": "layer:///identities/FrodoTheDodo",
  "name": "latest_color",
  "type": "LWW",
  "old": "blue",
  "new": "red",
  "version": 2,
  "status_text": "Frodo the Dodo has removed blue as a Favorite Color"
}"""

# SPEC section 6, verbatim.
REJECTION_EXAMPLE = b"""{"response_id": "r-01JD8W7M0Q", "message_id": "layer:///messages/940de862",
 "identity_id": "layer:///identities/FrodoTheDodo", "reason": "fww_conflict",
 "detail": "poll_choice already holds \\"b\\" for this identity",
 "change_index": 0, "change": {"operation": "add", "type": "FWW", "name": "poll_choice", "value": "c"},
 "raw": null}"""


def test_the_response_example_yields_the_event_example() -> None:
    r = run(
        line("r-01", add("Set", "favorite_colors", "blue"), add("LWW", "latest_color", "blue"),
             message=MESSAGE, identity=FRODO),
        RESPONSE_EXAMPLE,
    )
    assert r.rejections == []
    assert r.events[-1] == {**orjson.loads(EVENT_EXAMPLE), "cause": "response"}
    assert r.events[-2]["name"] == "favorite_colors"
    assert (r.events[-2]["old"], r.events[-2]["new"]) == (["blue"], None)


def test_the_summary_example() -> None:
    r = run(
        line("r-sam", add("Set", "favorite_colors", "red"), message=MESSAGE, identity=SAM),
        line(
            "r-frodo",
            add("Set", "favorite_colors", "red"),
            add("Set", "favorite_colors", "green"),
            add("LWW", "latest_color", "red"),
            message=MESSAGE,
            identity=FRODO,
        ),
    )
    assert r.summary(MESSAGE) == orjson.loads(SUMMARY_EXAMPLE)


def test_the_rejection_example() -> None:
    r = run(
        line("r-00", add("FWW", "poll_choice", "b"), message=MESSAGE, identity=FRODO),
        line("r-01JD8W7M0Q", add("FWW", "poll_choice", "c"), message=MESSAGE, identity=FRODO),
    )
    assert r.rejections == [orjson.loads(REJECTION_EXAMPLE)]


def test_seed_favorite_colors_and_latest_color_for_two_identities() -> None:
    r = run(
        line("r1", add("Set", "favorite_colors", "red"), add("Set", "favorite_colors", "blue"),
             add("LWW", "latest_color", "blue"), identity=FRODO),
        line("r2", add("Set", "favorite_colors", "blue"), add("LWW", "latest_color", "green"),
             identity=SAM),
        line("r3", remove("Set", "favorite_colors", "blue"), add("LWW", "latest_color", "red"),
             identity=FRODO),
    )
    states = r.summary()["states"]
    assert states["favorite_colors"]["values"] == {FRODO: ["red"], SAM: ["blue"]}
    assert states["latest_color"]["values"] == {FRODO: "red", SAM: "green"}
    # Each identity only ever writes its own state.
    assert [(e["identity_id"], e["name"], e["old"], e["new"]) for e in r.events] == [
        (FRODO, "favorite_colors", None, ["red", "blue"]),
        (FRODO, "latest_color", None, "blue"),
        (SAM, "favorite_colors", None, ["blue"]),
        (SAM, "latest_color", None, "green"),
        (FRODO, "favorite_colors", ["red", "blue"], ["red"]),
        (FRODO, "latest_color", "blue", "red"),
    ]
    assert r.summary()["version"] == 3
