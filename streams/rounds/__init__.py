"""The round protocol: a fetch's records decided, persisted with their fence and outbox, and
their outputs produced."""
