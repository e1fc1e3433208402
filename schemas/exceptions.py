"""Every error msgstate raises derives from MsgstateError."""

import re

# user:password@ in a URL (redis://:secret@host): never printed.
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")


class MsgstateError(Exception):
    """Root of all msgstate errors."""


class ConfigError(MsgstateError):
    """A setting (environment variable or option) has a value msgstate cannot use."""


class StackError(MsgstateError):
    """The local stack (Kafka broker or Redis server) could not be set up, started or stopped."""


class ServiceUnreachable(MsgstateError):
    """Kafka or Redis did not answer at the configured address."""

    def __init__(self, service: str, address: str, reason: str = "") -> None:
        self.service = service
        self.address = address = _CREDENTIALS.sub("***@", address)
        self.reason = reason
        text = f"{service} is unreachable at {address}"
        super().__init__(f"{text}: {reason}" if reason else text)


class ValidationError(MsgstateError):
    """A record or an SDK call breaks the wire contract (SPEC sections 2 and 3)."""


class Fenced(MsgstateError):
    """Another worker now owns this input partition; this one must not write for it any more."""

    def __init__(self, message: str, partition: int | None = None) -> None:
        super().__init__(message)
        self.partition = partition


class AlreadyApplied(MsgstateError):
    """The batch's offsets are at or below the partition's fence: they were applied before."""

    def __init__(self, message: str, partition: int | None = None) -> None:
        super().__init__(message)
        self.partition = partition


class StoreBehind(MsgstateError):
    """The store lost writes it had acknowledged (a failover to a replica that lacked them): its
    fence is behind what this worker applied, so the partition is taken again and read from
    the store's fence + 1."""

    def __init__(self, message: str, partition: int | None = None) -> None:
        super().__init__(message)
        self.partition = partition


class DeliveryError(MsgstateError):
    """Kafka did not take a published record; the record is intact and may be sent again."""


class AppRecordNotFound(MsgstateError):
    """An app persistence call named a record that does not exist."""


class AppRecordExists(MsgstateError):
    """An app persistence create met a record id that is taken."""


class AppUpdateConflict(MsgstateError):
    """An optimistic app persistence update kept meeting concurrent writes and gave up."""
