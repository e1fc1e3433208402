"""Kafka connection security (SSL, SASL) from `MSGSTATE_KAFKA_*`, for every client msgstate makes.

One description, rendered three ways: keyword options for kafka-python (producers, consumers,
admin), for aiokafka, and faust's `broker_credentials`. Redis needs nothing here: its URL
carries AUTH (`redis://user:password@host`) and TLS (`rediss://`, `?ssl_cert_reqs=...`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgstate.schemas.exceptions import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        def get(name: str) -> str | None:
            value = env.get(f"MSGSTATE_KAFKA_{name}", "").strip()
            return value or None

        def path(name: str) -> Path | None:
            value = get(name)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"MSGSTATE_KAFKA_{name}={value!r}: no such file")
            return Path(value) if value else None

        protocol = (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"MSGSTATE_KAFKA_SECURITY_PROTOCOL={protocol!r}: one of {', '.join(PROTOCOLS)}")
        mechanism = (get("SASL_MECHANISM") or "PLAIN").upper()
        if mechanism not in MECHANISMS:
            raise ConfigError(f"MSGSTATE_KAFKA_SASL_MECHANISM={mechanism!r}: one of {', '.join(MECHANISMS)}")
        security = cls(protocol, mechanism, get("SASL_USERNAME"), get("SASL_PASSWORD"),
                       path("SSL_CAFILE"), path("SSL_CERTFILE"), path("SSL_KEYFILE"))
        if security.sasl and (security.sasl_username is None or security.sasl_password is None):
            raise ConfigError(
                f"{protocol} needs MSGSTATE_KAFKA_SASL_USERNAME and MSGSTATE_KAFKA_SASL_PASSWORD")
        return security

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def kafka_python(self) -> dict[str, Any]:
        """Options for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        options.update(self._sasl_options())
        if self.tls:
            options.update(ssl_cafile=_str(self.ssl_cafile), ssl_certfile=_str(self.ssl_certfile),
                           ssl_keyfile=_str(self.ssl_keyfile), ssl_check_hostname=True)
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Options for aiokafka's AIOKafkaProducer and AIOKafkaConsumer."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        options.update(self._sasl_options())
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        return options

    def faust_credentials(self) -> Any:
        """faust's `broker_credentials`, or None for PLAINTEXT."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         mechanism=self.sasl_mechanism,
                                         ssl_context=self.ssl_context() if self.tls else None)
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def _sasl_options(self) -> dict[str, Any]:
        """The SASL options, spelled the same by kafka-python and aiokafka."""
        if not self.sasl:
            return {}
        return {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password}

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=_str(self.ssl_cafile))
        if self.ssl_certfile is not None:
            context.load_cert_chain(str(self.ssl_certfile), _str(self.ssl_keyfile))
        return context


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
