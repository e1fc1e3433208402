"""`msgstate stack up | status | down` on a stack of its own, and what commands say when a
service is unreachable."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from msgstate.schemas.exceptions import StackError
from msgstate.workers.config import Settings
from msgstate.workers.tools import stack

from ..conftest import ROOT


def msgstate(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "msgstate.workers", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def env_for(kafka: str, redis_url: str, stack_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MSGSTATE_KAFKA": kafka, "MSGSTATE_REDIS": redis_url,
                "MSGSTATE_STACK_DIR": str(stack_dir), "PYTHONPATH": str(ROOT)})
    return env


def number(text: str) -> int:
    return int(text.replace(",", ""))


def pid_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_is_idempotent_and_down_leaves_nothing_behind(stack_settings: Settings) -> None:
    kafka_port, redis_port = stack.free_port_pair(), stack.free_port_pair()
    settings = stack_settings.with_(kafka=f"127.0.0.1:{kafka_port}",
                                    redis=f"redis://127.0.0.1:{redis_port}/0")
    env = env_for(settings.kafka, settings.redis, settings.stack_dir)
    try:
        first = msgstate("stack", "up", env=env)
        assert first.returncode == 0, first.stderr
        assert f"127.0.0.1:{kafka_port}" in first.stdout and f"127.0.0.1:{redis_port}" in first.stdout
        pids = [s.pid for s in stack.status(settings)]
        assert all(pids), pids

        again = msgstate("stack", "up", env=env)
        assert again.returncode == 0, again.stderr
        assert [s.pid for s in stack.status(settings)] == pids, "a second `up` must not restart"

        status = msgstate("stack", "status", env=env)
        assert status.returncode == 0 and status.stdout.count("answers") == 2, status.stdout

        down = msgstate("stack", "down", env=env)
        assert down.returncode == 0, down.stderr
        for pid in pids:
            assert pid is not None and not pid_running(pid), f"pid {pid} still runs after down"
        for port in (kafka_port, kafka_port + 1, redis_port):
            assert not stack.port_in_use(port), f"port {port} still listens after down"
        after = msgstate("stack", "status", env=env)
        assert after.returncode == 1 and after.stdout.count("stopped") == 2, after.stdout
    finally:
        stack.down(settings, echo=lambda _line: None)
        for service in (stack.kafka_service(settings), stack.redis_service(settings)):
            shutil.rmtree(service.home, ignore_errors=True)


def test_up_with_three_kafka_brokers_and_a_redis_cluster_and_down_again(stack_settings: Settings) -> None:
    kafka_port, redis_port = stack.free_ports(6), stack.free_ports(6)
    settings = stack_settings.with_(kafka=f"127.0.0.1:{kafka_port}",
                                    redis=f"redis://127.0.0.1:{redis_port}/0")
    env = env_for(settings.kafka, settings.redis, settings.stack_dir)
    try:
        first = msgstate("stack", "up", "--kafka-brokers", "3", "--redis-cluster", "3", env=env, timeout=240)
        assert first.returncode == 0, first.stdout + first.stderr
        # Clients ports first, the controllers' after them; every broker in MSGSTATE_KAFKA.
        brokers = stack.kafka_nodes(settings)
        assert [b.ports for b in brokers] == [(kafka_port + i, kafka_port + 3 + i) for i in range(3)]
        servers = ",".join(f"127.0.0.1:{kafka_port + i}" for i in range(3))
        assert (f"export MSGSTATE_REDIS_CLUSTER=true MSGSTATE_REDIS={settings.redis} "
                f"MSGSTATE_KAFKA={servers} MSGSTATE_REPLICATION=3") in first.stdout, first.stdout
        env.update({"MSGSTATE_KAFKA": servers, "MSGSTATE_REDIS_CLUSTER": "true",
                    "MSGSTATE_REPLICATION": "3"})
        rows = stack.status(settings.with_(kafka=servers))
        assert [r.name for r in rows] == [*(f"Kafka:{kafka_port + i}" for i in range(3)),
                                          *(f"Redis:{redis_port + i}" for i in range(6))]
        pids = [r.pid for r in rows]
        assert all(pids) and all(r.answers for r in rows), rows

        again = msgstate("stack", "up", env=env, timeout=240)
        assert again.returncode == 0, again.stderr
        assert [r.pid for r in stack.status(settings)] == pids, "a second `up` must not restart"
        status = msgstate("stack", "status", env=env)
        assert status.returncode == 0 and status.stdout.count("answers") == 9, status.stdout

        down = msgstate("stack", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.count("stopped (pid") == 9, down.stdout
        for pid in pids:
            assert pid is not None and not pid_running(pid), f"pid {pid} still runs after down"
        for port in [*range(kafka_port, kafka_port + 6), *range(redis_port, redis_port + 6)]:
            assert not stack.port_in_use(port), f"port {port} still listens after down"
        after = msgstate("stack", "status", env=env)
        assert after.returncode == 1 and after.stdout.count("stopped") == 9, after.stdout
    finally:
        brokers, nodes = stack.kafka_nodes(settings), stack.cluster_nodes(settings)
        stack.down(settings, echo=lambda _line: None)
        for group in (brokers, nodes):
            if group:
                shutil.rmtree(group[0].home.parent, ignore_errors=True)


def test_a_kafka_cluster_refuses_a_broker_list_it_did_not_start(stack_settings: Settings) -> None:
    port = stack.free_ports(6)
    settings = stack_settings.with_(kafka=f"127.0.0.1:{port},127.0.0.1:{port + 5}")
    with pytest.raises(StackError, match=f"MSGSTATE_KAFKA=127.0.0.1:{port},127.0.0.1:{port + 1},"
                                         f"127.0.0.1:{port + 2}"):
        stack.start_kafka_cluster(settings, 3)
    assert not stack.kafka_nodes(settings)


# Every command that needs a service, with each service it needs.
NEEDS = [
    (("stack", "status"), "Kafka"),
    (("stack", "status"), "Redis"),
    (("worker",), "Kafka"),
    (("worker",), "Redis"),
    (("publish", "/dev/null"), "Kafka"),
    (("summary", "some-message"), "Redis"),
]


@pytest.mark.parametrize(("argv", "missing"), NEEDS, ids=[f"{' '.join(a)}-{m}" for a, m in NEEDS])
def test_an_unreachable_service_is_named_with_its_address(
    stack_settings: Settings, tmp_path: Path, argv: tuple[str, ...], missing: str
) -> None:
    dead = stack.free_port_pair()
    kafka = f"127.0.0.1:{dead}" if missing == "Kafka" else stack_settings.kafka
    redis_url = f"redis://127.0.0.1:{dead}/0" if missing == "Redis" else stack_settings.redis
    started = time.monotonic()
    done = msgstate(*argv, env=env_for(kafka, redis_url, tmp_path), timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert missing in text and f"127.0.0.1:{dead}" in text, text
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_demo_runs_on_a_running_stack_and_prints_the_tallies(settings: Settings) -> None:
    env = env_for(settings.kafka, settings.redis, settings.stack_dir)
    env.update({"MSGSTATE_TOPIC_PREFIX": settings.topics.prefix,
                "MSGSTATE_KEY_PREFIX": settings.key_prefix, "MSGSTATE_APP_ID": settings.app_id,
                "COLUMNS": "160"})
    done = msgstate("demo", env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Final tallies of the 5 busiest messages" in out
    assert "poll_choice" in out and "reactions" in out
    # It says what it publishes, and what came of it, as read back from the topics.
    assert "4,005 records to " in out and "5 records bad on purpose" in out
    published = re.search(r"what the workers did with the ([\d,]+) records Kafka acknowledged", out)
    accepted = re.search(r"accepted +([\d,]+) records", out)
    rejected = re.search(r"rejected +([\d,]+) records? whole; ([\d,]+) rejections in all, by reason: "
                         r"(.+)", out)
    assert published and accepted and rejected, out[-3000:]
    assert number(published[1]) == 4005
    assert number(accepted[1]) + number(rejected[1]) == 4005
    assert number(rejected[1]) == 3  # not JSON, no message_id, sent twice
    for reason in ("malformed", "invalid", "duplicate", "remove_not_allowed", "type_mismatch",
                   "fww_conflict"):
        assert reason in rejected[3]
    # Where to look next works as printed: the run's prefixes, then `msgstate summary`.
    export = re.search(r"^  export (.+)$", out, re.MULTILINE)
    assert export, out[-3000:]
    env.update(dict(pair.split("=", 1) for pair in export[1].split()))
    summary = msgstate("summary", "chat/messages/0000", env=env)
    assert summary.returncode == 0, summary.stderr
    assert orjson.loads(summary.stdout)["version"] > 0
    for command in ("msgstate tail --from-beginning", "msgstate http", "/live?message=chat/messages/0000",
                    "msgstate replay "):
        assert command in out
    # It used the running stack, so it left it running.
    assert all(s.answers for s in stack.status(settings))


def test_a_kafka_that_dies_while_starting_is_named_with_its_reason(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller port is taken after the busy-port check, as another process could; the
    error names the broker's own reason instead of only pointing at a log."""
    port = stack.free_port_pair()
    settings = stack_settings.with_(kafka=f"127.0.0.1:{port}",
                                    redis=f"redis://127.0.0.1:{stack.free_port_pair()}/0")
    checked = stack._refuse_busy_ports
    blocker = socket.socket()

    def check_then_take_the_controller_port(service: stack.Service) -> None:
        checked(service)
        blocker.bind(("127.0.0.1", port + 1))
        blocker.listen()

    monkeypatch.setattr(stack, "_refuse_busy_ports", check_then_take_the_controller_port)
    try:
        with pytest.raises(StackError) as failed:
            stack.start_service(settings, "kafka")
        message = str(failed.value)
        assert f"Kafka exited while starting at 127.0.0.1:{port}" in message
        assert f"127.0.0.1:{port + 1}: Address already in use" in message, message
    finally:
        blocker.close()
        stack.stop_service(settings, "kafka")
        shutil.rmtree(stack.kafka_service(settings).home, ignore_errors=True)


def test_port_pairs_are_outside_the_ephemeral_range_and_never_overlap() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [stack.free_port_pair() for _ in range(200)]
    assert all(10000 <= p < low - 1 for p in ports)
    taken = [q for p in ports for q in (p, p + 1)]
    assert len(set(taken)) == len(taken)


def test_the_stack_redis_keeps_an_aof_and_rewrites_it_only_past_a_gigabyte(
    stack_settings: Settings,
) -> None:
    client = redis.Redis.from_url(stack_settings.redis, decode_responses=True)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        size = client.config_get("auto-aof-rewrite-min-size")
        assert size == {"auto-aof-rewrite-min-size": str(1 << 30)}
    finally:
        client.close()


def test_demo_on_a_redis_cluster_starts_it_runs_on_it_and_stops_it(stack_settings: Settings) -> None:
    kafka_port, redis_port = stack.free_port_pair(), stack.free_ports(6)
    settings = stack_settings.with_(kafka=f"127.0.0.1:{kafka_port}", redis=f"redis://127.0.0.1:{redis_port}/0",
                                    redis_cluster=True)
    env = {**env_for(settings.kafka, settings.redis, settings.stack_dir), "COLUMNS": "160"}
    try:
        done = msgstate("demo", "--redis-cluster", "3", env=env, timeout=480)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        # The six nodes it started, the run's outcome read back, the tallies read from the cluster.
        assert all(f"Redis:{redis_port + i}" in out for i in range(6)), out[:3000]
        accepted = re.search(r"accepted +([\d,]+) records", out)
        assert accepted and number(accepted[1]) == 4002, out[-3000:]
        assert "Final tallies of the 5 busiest messages" in out and "poll_choice" in out
        assert "MSGSTATE_REDIS_CLUSTER=true" in out
        assert "msgstate stack up --redis-cluster 3 " in out
        # It stopped what it started.
        assert not any(row.pid or row.answers for row in stack.status(settings)), stack.status(settings)
    finally:
        nodes = stack.cluster_nodes(settings)
        stack.down(settings, echo=lambda _line: None)
        if nodes:
            shutil.rmtree(nodes[0].home.parent, ignore_errors=True)
