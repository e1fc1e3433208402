"""The Lua scripts of streams/lua/, by name."""

from __future__ import annotations

from importlib import resources


def lua(name: str) -> str:
    return (resources.files("msgstate.streams") / "lua" / name).read_text()
