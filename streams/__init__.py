"""The processing, by concern: the pure engine, the round protocol, the Redis side, the client
SDK and the apps platform."""
