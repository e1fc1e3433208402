"""The Redis side: the key layout, the round store, the codecs, the summary reader and the Lua scripts."""
