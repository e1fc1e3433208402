"""Structured logs: one JSON object per line (or text), with the record's context (topic,
partition, offset, message id...) given through `extra=` or a LoggerAdapter."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# Conditions the Kafka clients retry by themselves, which they log at error level while topics
# are created or a group forms (a healthy worker's first start): warnings, not errors.
RETRIED = ("GroupCoordinatorNotAvailable", "NotCoordinator", "NotLeaderForPartition",
           "LeaderNotAvailable", "UnknownTopicOrPartition", "CoordinatorLoadInProgress",
           "NodeNotReady", "RebalanceInProgress", "Unable connect to node")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class RetriedAreWarnings(logging.Filter):
    """Lowers a Kafka client's error about a condition it retries to a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and not record.exc_info:
            text = record.getMessage()
            if any(name in text for name in RETRIED):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def lower_retried(logger: logging.Logger) -> None:
    """Apply `RetriedAreWarnings` to each of `logger`'s handlers: for logging that another
    library set up (the apps worker's faust), where `configure` is not used."""
    for handler in logger.handlers:
        if not any(isinstance(f, RetriedAreWarnings) for f in handler.filters):
            handler.addFilter(RetriedAreWarnings())


def configure(level: int = logging.INFO, fmt: str = "json") -> None:
    """Log to stderr as JSON lines (`fmt="json"`) or as text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RetriedAreWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Kafka clients log every coordinator hiccup; ours say what matters.
    for client in ("aiokafka", "kafka"):
        logging.getLogger(client).setLevel(max(level, logging.WARNING))
