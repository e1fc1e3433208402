"""docker-compose.yml cannot run here (no Docker engine): keep it valid against the Compose spec."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    if not SPEC.exists():
        # Outside the team's checkout the schema is not there; CI always has it.
        if os.environ.get("CI"):
            pytest.fail(f"{SPEC} is missing in CI")
        pytest.skip(f"{SPEC} is not beside this checkout")
    loaded = json.loads(SPEC.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    validator = jsonschema.Draft7Validator(compose_schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_validation_catches_a_broken_compose_file(compose_schema: dict[str, Any]) -> None:
    broken = {"services": {"kafka": {"image": "apache/kafka:4.3.1", "ports": {"9092": "9092"}}}}
    assert list(jsonschema.Draft7Validator(compose_schema).iter_errors(broken))


def test_compose_runs_kafka_in_kraft_mode_redis_with_aof_and_the_workers(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--appendonly" in services["redis"]["command"]
    worker = services["state-worker"]
    assert worker["command"] == ["msgstate", "worker"]
    assert worker["environment"]["MSGSTATE_KAFKA"] == "kafka:9092"
    for dependency in worker["depends_on"]:
        assert dependency in services
        assert "healthcheck" in services[dependency]
    assert (ROOT / "Dockerfile").exists()


def test_every_msgstate_service_runs_a_real_command_from_the_image(compose: dict[str, Any]) -> None:
    from msgstate.workers.cli.main import cli

    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("build") == "."}
    single = {name: s for name, s in ours.items() if "profiles" not in s}
    assert set(single) == {"state-worker", "apps-worker", "analytics", "http-api"}
    assert set(ours) - set(single) == {f"cluster-{name}" for name in single}
    for name, service in ours.items():
        program, command, *_ = service["command"]
        assert program == "msgstate" and command in cli.commands, name
    for name, service in single.items():
        assert service["environment"]["MSGSTATE_KAFKA"] == "kafka:9092", name
        assert set(service["depends_on"]) == {"kafka", "redis"}, name


def test_the_cluster_profile_runs_three_redis_masters_with_a_replica_each_and_three_brokers(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = {name: s for name, s in services.items() if "profiles" in s}
    assert all(s["profiles"] == ["cluster"] for s in cluster.values())
    nodes = [f"cluster-redis-{n}" for n in range(1, 7)]
    for node in nodes:
        command = " ".join(cluster[node]["command"])
        assert "--cluster-enabled yes" in command and "--appendonly yes" in command, node
    create = cluster["cluster-redis-create"]
    script = " ".join(create["command"])
    assert "--cluster create --cluster-replicas 1" in script
    assert "for n in 1 2 3 4 5 6" in script and set(create["depends_on"]) == set(nodes)
    brokers = [f"cluster-kafka-{n}" for n in range(1, 4)]
    voters = ",".join(f"{n}@cluster-kafka-{n}:9093" for n in range(1, 4))
    for n, broker in enumerate(brokers, start=1):
        env = cluster[broker]["environment"]
        assert env["KAFKA_NODE_ID"] == n and env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{broker}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
    assert len({cluster[b]["environment"]["CLUSTER_ID"] for b in brokers}) == 1
    workers = {name: s for name, s in cluster.items() if s.get("build") == "."}
    assert len(workers) == 4
    for name, worker in workers.items():
        env = worker["environment"]
        assert env["MSGSTATE_REDIS_CLUSTER"] == "true" and env["MSGSTATE_REPLICATION"] == "3", name
        assert env["MSGSTATE_KAFKA"] == ",".join(f"{b}:9092" for b in brokers), name
        assert {u.split("//")[1].split(":")[0] for u in env["MSGSTATE_REDIS"].split(",")} <= set(nodes)
        created = {"condition": "service_completed_successfully"}
        assert worker["depends_on"] == {**{b: {"condition": "service_healthy"} for b in brokers},
                                        "cluster-redis-create": created}
    # Nothing of the single-node system depends on the cluster, or the other way round.
    for name, service in services.items():
        assert all((dep in cluster) == (name in cluster) for dep in service.get("depends_on", {})), name


def test_the_api_and_analytics_have_health_checks_on_their_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api = services["http-api"]
    port = api["environment"]["MSGSTATE_HTTP_PORT"]
    assert api["environment"]["MSGSTATE_HTTP_HOST"] == "0.0.0.0"
    assert f"{port}:{port}" in api["ports"]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(api["healthcheck"]["test"])
    analytics = services["analytics"]
    metrics = analytics["environment"]["MSGSTATE_ANALYTICS_METRICS_PORT"]
    assert f"http://127.0.0.1:{metrics}/metrics" in " ".join(analytics["healthcheck"]["test"])


def test_the_published_api_needs_tokens_and_ships_no_key(compose: dict[str, Any]) -> None:
    api = compose["services"]["http-api"]["environment"]
    assert api["MSGSTATE_HTTP_HOST"] == "0.0.0.0"
    # Keys come from the operator's .env; compose stops with a message when they are missing.
    assert api["MSGSTATE_HTTP_TOKEN_KEYS"].startswith("${MSGSTATE_HTTP_TOKEN_KEYS:?")
    assert "MSGSTATE_HTTP_INSECURE" not in api


def test_every_msgstate_variable_in_compose_is_documented_in_the_readme(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    names = {var for service in compose["services"].values()
             for var in service.get("environment", {}) if var.startswith("MSGSTATE_")}
    assert names
    assert {n for n in names if f"`{n}`" not in readme} == set()


def test_every_msgstate_variable_the_code_reads_is_in_the_configuration_table() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):].split("\n## ", 1)[0]
    used = {name for folder in ("schemas", "streams", "workers") for path in (ROOT / folder).rglob("*.py")
            for name in re.findall(r"MSGSTATE_[A-Z_]+[A-Z]", path.read_text())}
    assert len(used) >= 10
    assert {n for n in used if f"| `{n}` |" not in table} == set()


def test_the_pictures_the_readme_shows_exist() -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert "docs/live-page.png" in pictures
    for picture in pictures:
        assert (ROOT / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
