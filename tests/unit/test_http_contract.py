"""The OpenAPI document agrees with the API's routes; new settings and JSON logs behave."""

from __future__ import annotations

import json
import logging
import re

import jsonschema
import pytest

from msgstate.schemas.exceptions import ConfigError
from msgstate.workers.config import Settings
from msgstate.workers.logs import JsonFormatter, RetriedAreWarnings
from msgstate.workers.services.http_api import build_app, static_text

DOC = json.loads(static_text("openapi.json"))


def test_the_openapi_document_lists_exactly_the_routes() -> None:
    app = build_app(Settings())
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    documented = {(method.upper(), path) for path, ops in DOC["paths"].items() for method in ops}
    assert served == documented


def test_every_path_parameter_is_documented_and_required() -> None:
    for path, ops in DOC["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == names, path
            assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
            assert "200" in op["responses"]


def test_the_component_schemas_are_valid_json_schemas() -> None:
    assert DOC["openapi"].startswith("3.1")
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert name


def test_every_route_that_reads_a_message_declares_its_token_and_the_refusals() -> None:
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer",
                                      "bearerFormat": "JWT"}
    assert schemes["queryToken"] == {**schemes["queryToken"], "type": "apiKey", "in": "query",
                                     "name": "token"}
    reading = 0
    for path, ops in DOC["paths"].items():
        for op in ops.values():
            if "{message_id}" in path:
                reading += 1
                assert {"bearerToken": []} in op["security"], path
                for status in ("401", "403"):
                    response = op["responses"][status]
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}
                    assert "WWW-Authenticate" in response["headers"], (path, status)
                # Only EventSource needs the query token; only streams are counted.
                streams = path.endswith("/events")
                assert ({"queryToken": []} in op["security"]) is streams, path
                assert ("429" in op["responses"]) is streams, path
            else:
                assert op["security"] == [], path  # health, readiness, metrics, this document, the page
    assert reading == 3


def test_http_and_analytics_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"MSGSTATE_HTTP_HOST": "0.0.0.0", "MSGSTATE_HTTP_PORT": "9000",
                                  "MSGSTATE_ANALYTICS_RETENTION": "600"})
    assert (settings.http_host, settings.http_port, settings.analytics_retention) == ("0.0.0.0", 9000, 600)
    assert Settings.from_env({}).http_port == 8080
    with pytest.raises(ConfigError, match="MSGSTATE_HTTP_PORT"):
        Settings.from_env({"MSGSTATE_HTTP_PORT": "70000"})
    with pytest.raises(ConfigError, match="MSGSTATE_ANALYTICS_RETENTION"):
        Settings.from_env({"MSGSTATE_ANALYTICS_RETENTION": "soon"})


def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    record = logging.LogRecord("msgstate.http", logging.WARNING, __file__, 1, "port %d busy", (80,), None)
    record.port = 80
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "warning" and entry["logger"] == "msgstate.http"
    assert entry["message"] == "port 80 busy" and entry["port"] == 80
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])


def test_a_condition_the_kafka_client_retries_is_a_warning_not_an_error() -> None:
    retried = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, __file__, 1,
                                "Group Coordinator Request failed: %s",
                                ("[Error 15] GroupCoordinatorNotAvailableError",), None)
    other = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, "Unexpected error", (), None)
    assert RetriedAreWarnings().filter(retried) and RetriedAreWarnings().filter(other)
    assert retried.levelname == "WARNING" and other.levelname == "ERROR"
