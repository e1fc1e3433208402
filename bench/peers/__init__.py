"""Peers: the same rules run the ways other designs would run them, for the benchmark.

Each applies the engine per record (as those designs do) to state kept per message id:
- `naive`: a faust agent that GETs the message's state JSON from Redis, applies, SETs it back;
- `table`: a faust Table keyed by message id (in memory, with its changelog topic);
- `quix`: quix-streams with its State (RocksDB, with its changelog topic).
Each writes summary-change events and rejections to its own topics, like the worker.
"""
