"""Kafka security settings: read from the environment, rendered for each client library."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from msgstate.schemas.exceptions import ConfigError, ServiceUnreachable
from msgstate.workers.kafka_security import KafkaSecurity


def test_plaintext_by_default() -> None:
    security = KafkaSecurity.from_env({})
    assert security.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert security.aiokafka() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None


def test_sasl_plaintext_passes_the_credentials_to_every_client() -> None:
    env = {"MSGSTATE_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
           "MSGSTATE_KAFKA_SASL_MECHANISM": "scram-sha-512",
           "MSGSTATE_KAFKA_SASL_USERNAME": "worker", "MSGSTATE_KAFKA_SASL_PASSWORD": "s3cret"}
    security = KafkaSecurity.from_env(env)
    assert security.kafka_python() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "worker", "sasl_plain_password": "s3cret"}
    assert security.aiokafka()["sasl_plain_password"] == "s3cret"
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("worker", "s3cret")


def test_sasl_ssl_builds_a_context_from_the_ca_file(tmp_path: Path) -> None:
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    env = {"MSGSTATE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MSGSTATE_KAFKA_SSL_CAFILE": str(ca),
           "MSGSTATE_KAFKA_SASL_USERNAME": "u", "MSGSTATE_KAFKA_SASL_PASSWORD": "p"}
    security = KafkaSecurity.from_env(env)
    assert security.kafka_python()["ssl_cafile"] == str(ca)
    assert isinstance(security.aiokafka()["ssl_context"], ssl.SSLContext)
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert isinstance(credentials.ssl_context, ssl.SSLContext)


@pytest.mark.parametrize(("env", "message"), [
    ({"MSGSTATE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "one of PLAINTEXT, SSL"),
    ({"MSGSTATE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs MSGSTATE_KAFKA_SASL_USERNAME"),
    ({"MSGSTATE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "one of PLAIN, SCRAM"),
    ({"MSGSTATE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
])
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaSecurity.from_env(env)


def test_a_redis_password_never_appears_in_an_error() -> None:
    error = ServiceUnreachable("Redis", "rediss://msgstate:hunter2@127.0.0.1:6380/0", "refused")
    assert "hunter2" not in str(error) and "127.0.0.1:6380" in str(error)
