"""The wire records of msgstate: models, validation, the orjson codec and the JSON Schemas."""
