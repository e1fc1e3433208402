"""The pure engine: decoding, the rules, summaries, replay, and the decider (the engine over a
cache of what Redis holds), in Python and compiled."""
