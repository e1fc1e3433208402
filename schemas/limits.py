"""The numeric limits of the wire contract (SPEC sections 2-3), in one place.

The Python validators, the engine and the generated JSON Schemas all read
these, so a limit cannot differ between them.
"""

from __future__ import annotations

MAX_RECORD_BYTES = 65_536  # a record's value, UTF-8 bytes; above it: too_large

MAX_RESPONSE_ID = 128  # code points, for each field below (minimum 1)
MAX_MESSAGE_ID = 256
MAX_PART_ID = 128
MAX_IDENTITY_ID = 256
MAX_STATUS_TEXT = 4096  # may be empty
MAX_CHANGES = 100  # per response (minimum 1)
# How deep a change may nest, the change itself being level 1: a rejection echoes the change,
# and orjson encodes no deeper than 254 levels.
MAX_CHANGE_DEPTH = 64

MAX_NAME = 128  # a state name, ASCII A-Z a-z 0-9 _ . : -
NAME_CHARS = "A-Za-z0-9_.:-"  # as a regex character class body
MAX_VALUE_BYTES = 1024  # a string value (UTF-8 bytes), an array's or object's canonical encoding
MAX_VALUE_DEPTH = 16  # levels of arrays and objects in a value, the value itself being level 1
FLOAT_LIMIT = 2.0**63  # a float value's magnitude is below it
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

MAX_NAMES = 64  # state names per (message, part)
MAX_MEMBERS = 256  # Set members per identity
MAX_VALUES_CAP = 10_000  # the highest `max_values` a registry may give a state

DEDUPE_WINDOW = 10_000  # response ids remembered per message, at least

DEFAULT_PART = "root"

# Chat-message events (SPEC section 8): ids are bounded like the other ids.
MAX_CHAT_ID = 256
