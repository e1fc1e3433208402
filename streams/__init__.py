"""The processing: the pure engine, the Redis store, the faust app, the client SDK."""
