"""The local stack: a single-node KRaft Kafka broker (or several in one KRaft cluster) and a
Redis server (or a Redis Cluster of masters with a replica each), run from the stack dir.

Jars are cached in `<stack dir>/kafka-<version>/libs`; each instance lives in
`<stack dir>/kafka-<port>/` and `<stack dir>/redis-<port>/` (clusters in `kafka-cluster-<port>/`
and `redis-cluster-<port>/`, a folder per node), so stacks on other ports (the test suite's, a
second developer's) share the cache and nothing else.

A Kafka cluster of M brokers takes the 2M ports from MSGSTATE_KAFKA's first one, P: the clients'
ports P .. P+M-1, then the controllers' P+M .. P+2M-1. Broker i (node.id i, from 1) listens on
P+i-1, its controller on P+M+i-1; a single broker is the case M = 1 (P, and P+1).

Each process is started in its own session with a pid file; `down` stops exactly
the pids it wrote (after checking the pid still runs our command line) and waits
for them to exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from msgstate.schemas.exceptions import StackError
from msgstate.workers.config import Settings, redis_port, split_host_port
from msgstate.workers.services import probes
from msgstate.workers.tools import kafka_dist

KAFKA_START_TIMEOUT = 90.0
REDIS_START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
AOF_REWRITE_MIN_SIZE = "1gb"
# A dead master's replica takes over after about this (plus the election): short, for tests.
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_START_TIMEOUT = 60.0
KAFKA_CLUSTER_START_TIMEOUT = 150.0
SERVICES = ("kafka", "redis")

# Processes started by this Python process: kept referenced (and polled) while they run.
_children: dict[int, subprocess.Popen[bytes]] = {}

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


@dataclass(frozen=True, slots=True)
class Service:
    """One process of the stack: how to recognise it, where it logs, how to tell it answers."""

    name: str
    address: str
    ports: tuple[int, ...]
    home: Path
    marker: str  # a string of its command line that tells our process from a recycled pid

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name.lower()}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "stdout.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        child = _children.get(pid)
        if child is not None and child.poll() is None:
            # Started by this process: trust it even before Redis retitles its command line.
            return pid
        if _cmdline(pid) is not None and self.marker in (_cmdline(pid) or ""):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    answers: bool
    log: Path


def kafka_service(settings: Settings) -> Service:
    port = _kafka_port(settings)
    home = settings.stack_dir.resolve() / f"kafka-{port}"
    return Service("Kafka", f"127.0.0.1:{port}", (port, port + 1), home, str(home / "server.properties"))


def _kafka_port(settings: Settings) -> int:
    host, port = split_host_port(settings.kafka_servers[0], "MSGSTATE_KAFKA")
    if host not in ("127.0.0.1", "localhost"):
        raise StackError(f"the local stack runs Kafka on loopback only, not {host} (MSGSTATE_KAFKA)")
    return port


def kafka_addresses(first: int, brokers: int) -> str:
    """MSGSTATE_KAFKA for a local cluster of `brokers` from port `first`: every broker, so that a
    client can start while one of them is down."""
    return ",".join(f"127.0.0.1:{port}" for port in range(first, first + brokers))


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers` (SPEC section 9):
    min(M, 3), and one less than that but at least 1, so one broker may be down."""
    factor = min(brokers, 3)
    return factor, max(1, factor - 1)


def kafka_nodes(settings: Settings) -> list[Service]:
    """The brokers of the local Kafka cluster whose first port MSGSTATE_KAFKA names, as many as
    `up` started there (none for a single broker); node.id i is the list's item i - 1."""
    first = _kafka_port(settings)
    home = settings.stack_dir.resolve() / f"kafka-cluster-{first}"
    try:
        count = int((home / "brokers").read_text())
    except (OSError, ValueError):
        return []
    return [Service(f"Kafka:{first + i}", f"127.0.0.1:{first + i}", (first + i, first + count + i),
                    home / f"node-{i + 1}", str(home / f"node-{i + 1}" / "server.properties"))
            for i in range(count)]


def redis_service(settings: Settings) -> Service:
    port = redis_port(settings.redis)
    home = settings.stack_dir.resolve() / f"redis-{port}"
    return Service("Redis", settings.redis, (port,), home, f"127.0.0.1:{port}")


def up(settings: Settings, echo: Callable[[str], None] = print,
       redis_masters: int = 0, kafka_brokers: int = 0) -> list[ServiceStatus]:
    """Start what is not running, return when both answer. Idempotent; a service that already
    answers at its address (started elsewhere) is used as it is, and `down` leaves it alone.
    With `redis_masters` (or MSGSTATE_REDIS_CLUSTER), Redis is a cluster of that many masters
    (3 by default), each with a replica, on consecutive ports from MSGSTATE_REDIS's. With
    `kafka_brokers` (or a cluster started there before, or MSGSTATE_KAFKA listing several
    brokers), Kafka is a KRaft cluster of that many brokers from MSGSTATE_KAFKA's first port."""
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    brokers = kafka_brokers or len(kafka_nodes(settings)) or len(settings.kafka_servers)
    if redis_masters or settings.redis_cluster:
        start_redis_cluster(settings, redis_masters or len(cluster_nodes(settings)) // 2 or 3)
    else:
        start_service(settings, "redis", wait=False)
    if brokers > 1:
        start_kafka_cluster(settings, brokers, wait=False)
    else:
        start_service(settings, "kafka", wait=False)
    if not (redis_masters or settings.redis_cluster):
        start_service(settings, "redis")
    if brokers > 1:
        start_kafka_cluster(settings, brokers)
    else:
        start_service(settings, "kafka")
    result = status(settings)
    for s in result:
        where = f"pid {s.pid}  log {s.log}" if s.pid else "already running (not started here)"
        echo(f"{s.name:<6} {s.address}  {where}")
    return result


def down(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """Stop the processes this stack started (by pid file) and wait until they are gone."""
    brokers = kafka_nodes(settings)
    for which in SERVICES:
        if which == "kafka" and brokers:
            continue
        service = _service(settings, which)
        pid = stop_service(settings, which)
        echo(f"{service.name:<6} stopped (pid {pid})" if pid else f"{service.name:<6} not running")
    for node, pid in _stop_nodes(brokers):
        echo(f"{node.name} stopped (pid {pid})")
    for node, pid in _stop_nodes(cluster_nodes(settings)):
        echo(f"{node.name} stopped (pid {pid})")


@contextlib.contextmanager
def private_stack(base: Settings, partitions: int, redis_masters: int = 0,
                  kafka_brokers: int = 1) -> Iterator[Settings]:
    """Kafka (one broker, or a KRaft cluster of `kafka_brokers`) and Redis (or a Redis Cluster
    of `redis_masters`) of their own on free ports (the jar cache is shared), removed after.
    msgstate's topics are then created with the cluster's replication factor."""
    kafka_port = free_ports(2 * kafka_brokers)
    redis_ports = free_ports(2 * redis_masters) if redis_masters else free_port_pair()
    settings = base.with_(kafka=kafka_addresses(kafka_port, kafka_brokers),
                          redis=f"redis://127.0.0.1:{redis_ports}/0",
                          redis_cluster=bool(redis_masters), partitions=partitions,
                          replication=replication_for(kafka_brokers)[0])
    try:
        # Inside: a half-started stack is stopped too.
        up(settings, echo=lambda _line: None, redis_masters=redis_masters, kafka_brokers=kafka_brokers)
        yield settings
    finally:
        nodes = cluster_nodes(settings)
        brokers = kafka_nodes(settings)
        down(settings, echo=lambda _line: None)
        for service in (kafka_service(settings), redis_service(settings), *nodes, *brokers):
            shutil.rmtree(service.home, ignore_errors=True)
        for group in (nodes, brokers):
            if group:
                shutil.rmtree(group[0].home.parent, ignore_errors=True)


@contextlib.contextmanager
def private_redis_cluster(base: Settings, masters: int) -> Iterator[Settings]:
    """A Redis Cluster of `masters`, a replica each, of its own on free ports beside the stack
    `base` names (its Kafka is left alone); stopped and removed after."""
    settings = base.with_(redis=f"redis://127.0.0.1:{free_ports(2 * masters)}/0", redis_cluster=True)
    try:
        start_redis_cluster(settings, masters)
        # Every slot is served before each replica has taken its master: wait for them too.
        nodes = cluster_nodes(settings)
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT
        while sum(replica_of(node) is not None for node in nodes) < masters:
            if time.monotonic() > deadline:
                raise StackError(f"the replicas of the Redis Cluster at {settings.redis} did not follow "
                                 f"their masters within {CLUSTER_START_TIMEOUT:.0f} s")
            time.sleep(0.25)
        yield settings
    finally:
        nodes = cluster_nodes(settings)
        _stop_nodes(nodes)
        if nodes:
            shutil.rmtree(nodes[0].home.parent, ignore_errors=True)


def _stop_nodes(nodes: list[Service], kill: bool = False) -> list[tuple[Service, int]]:
    """Stop the running ones of `nodes` all at once (a KRaft broker whose quorum is gone would
    otherwise wait for it), then wait for each; returns the ones stopped and their pids."""
    running = [(node, pid) for node in nodes if (pid := node.pid()) is not None]
    for _node, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    for node, pid in running:
        _stop(pid, node)
        node.pid_file.unlink(missing_ok=True)
    return running


def kill_node(node: Service) -> int | None:
    """SIGKILL one node of a cluster, as a crash would, and wait until it is gone; its pid, or
    None when it was not running. Fault runs start it again with `start_redis_cluster` or
    `start_kafka_cluster`, which start the nodes that do not run."""
    stopped = _stop_nodes([node], kill=True)
    return stopped[0][1] if stopped else None


def cluster_nodes(settings: Settings) -> list[Service]:
    """The nodes of the local Redis Cluster whose first port MSGSTATE_REDIS names, as many as
    `up` started there (none when it started none)."""
    first = redis_port(settings.redis)
    home = settings.stack_dir.resolve() / f"redis-cluster-{first}"
    try:
        count = int((home / "nodes").read_text())
    except (OSError, ValueError):
        return []
    return [Service(f"Redis:{port}", f"redis://127.0.0.1:{port}/0", (port,), home / f"node-{port}",
                    f"127.0.0.1:{port}") for port in range(first, first + count)]


def start_redis_cluster(settings: Settings, masters: int) -> None:
    """Start `masters` masters and a replica each on consecutive ports, join them in a cluster
    (redis-cli --cluster create), and return once every node sees every slot served."""
    first = redis_port(settings.redis)
    home = settings.stack_dir.resolve() / f"redis-cluster-{first}"
    home.mkdir(parents=True, exist_ok=True)
    (home / "nodes").write_text(f"{2 * masters}\n")
    nodes = cluster_nodes(settings)
    for node in nodes:
        _start_redis(node, ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)])
    for node in nodes:
        _await(node, partial(probes.redis_answers, node.address), REDIS_START_TIMEOUT, {})
    if not _cluster_ok(nodes[0]):
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError("redis-cli is not installed: apt-get install -y redis-server (./dev does it)")
        _run([cli, "--cluster", "create", *(f"127.0.0.1:{n.ports[0]}" for n in nodes),
              "--cluster-replicas", "1", "--cluster-yes"], nodes[0], "cluster create")
    deadline = time.monotonic() + CLUSTER_START_TIMEOUT
    while not all(_cluster_ok(node) for node in nodes):
        if time.monotonic() > deadline:
            raise StackError(f"the Redis Cluster at {settings.redis} did not serve every slot within "
                             f"{CLUSTER_START_TIMEOUT:.0f} s; see {home}")
        time.sleep(0.25)


def cluster_info(node: Service) -> dict[str, str]:
    """CLUSTER INFO of one node ({} when it does not answer)."""
    import redis

    try:
        client = redis.Redis(port=node.ports[0], socket_timeout=2, socket_connect_timeout=2)
        with contextlib.closing(client):
            raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return {}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


def slot_master(settings: Settings, slot: int) -> tuple[int, str] | None:
    """(port, node id) of the master serving `slot` of the local Redis Cluster, as the first node
    that answers sees it; None while no master serves it (its master failed, no replica
    promoted yet)."""
    for node in cluster_nodes(settings):
        lines = _cluster_nodes(node)
        if lines is None:
            continue
        for line in lines:
            fields = line.split()
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags or "fail?" in flags:
                continue
            for served in fields[8:]:
                if served.startswith("["):  # a slot migrating or importing
                    continue
                low, _, high = served.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rpartition(":")[2]), fields[0]
        return None
    return None


def replica_of(node: Service) -> int | None:
    """The port of the master a Redis node replicates, or None (a master, or not answering)."""
    import redis

    try:
        client = redis.Redis(port=node.ports[0], socket_timeout=2, socket_connect_timeout=2)
        with contextlib.closing(client):
            info = client.info("replication")
    except redis.RedisError:
        return None
    return int(info["master_port"]) if info.get("role") == "slave" else None


def _cluster_nodes(node: Service) -> list[str] | None:
    """CLUSTER NODES of one node, a line per node (None when it does not answer)."""
    import redis

    try:
        client = redis.Redis(port=node.ports[0], socket_timeout=2, socket_connect_timeout=2)
        with contextlib.closing(client):
            raw = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return [line for line in text.splitlines() if line.strip()]


def partition_leader(bootstrap: str, topic: str, partition: int, timeout: float = 3.0
                     ) -> tuple[int, list[int]] | None:
    """(leader's node id, in-sync replicas) of one partition, as the brokers report it now; None
    when no broker answers (the leader is -1 while the partition has none)."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, timeout)
    except KafkaError:
        return None
    try:
        topics = admin.describe_topics([topic])
    except KafkaError:
        return None
    finally:
        admin.close()
    for found in topics:
        for part in found["partitions"]:
            if part["partition_index"] == partition:
                return int(part["leader_id"]), sorted(part["isr_nodes"])
    return None


def _cluster_ok(node: Service) -> bool:
    info = cluster_info(node)
    return info.get("cluster_state") == "ok" and info.get("cluster_slots_ok") == "16384"


def start_service(settings: Settings, which: str, wait: bool = True) -> None:
    """Start one service of the stack ("kafka" or "redis") unless it runs; with `wait`, return
    once it answers. Fault-injection runs restart one service while the other stays up. On a
    Kafka cluster, "kafka" is every broker."""
    if which == "kafka" and (brokers := kafka_nodes(settings)):
        start_kafka_cluster(settings, len(brokers), wait=wait)
        return
    service = _service(settings, which)
    marks = log_marks(service.log_file.parent)
    if which == "redis":
        _start_redis(service)
        if wait:
            _await(service, lambda: probes.redis_answers(settings.redis), REDIS_START_TIMEOUT,
                   marks)
    else:
        _start_kafka(service, settings)
        if wait:
            # A metadata request only once the port is open: fewer failed client connections.
            _await(service, lambda: port_in_use(service.ports[0])
                   and probes.kafka_answers(service.address), KAFKA_START_TIMEOUT, marks)


def stop_service(settings: Settings, which: str, kill: bool = False) -> int | None:
    """Stop one service this stack started (SIGTERM, or SIGKILL as a crash would) and wait until
    it is gone; returns its pid, or None when it was not running. On a Kafka cluster, "kafka"
    is every broker (the first one's pid is returned)."""
    if which == "kafka" and (brokers := kafka_nodes(settings)):
        stopped = _stop_nodes(brokers, kill=kill)
        return stopped[0][1] if stopped else None
    service = _service(settings, which)
    pid = service.pid()
    if pid is None:
        return None
    if kill:
        os.kill(pid, signal.SIGKILL)
    _stop(pid, service)
    service.pid_file.unlink(missing_ok=True)
    return pid


def start_kafka_cluster(settings: Settings, brokers: int, wait: bool = True) -> None:
    """Start the brokers of a KRaft cluster of `brokers` (combined broker and controller each,
    one cluster id, static voters) that do not run; with `wait`, return once every broker is
    registered and unfenced. Restarting one broker after a crash is the same call."""
    first = _kafka_port(settings)
    expected = kafka_addresses(first, brokers)
    if len(settings.kafka_servers) > 1 and ",".join(settings.kafka_servers) != expected:
        raise StackError(f"MSGSTATE_KAFKA={settings.kafka}: the local stack runs {brokers} brokers on "
                         f"consecutive ports, MSGSTATE_KAFKA={expected}")
    home = settings.stack_dir.resolve() / f"kafka-cluster-{first}"
    existing = kafka_nodes(settings)
    if existing and len(existing) != brokers:
        raise StackError(f"a Kafka cluster of {len(existing)} brokers was set up in {home}; ask for "
                         f"{len(existing)}, or stop it and remove that folder")
    single = kafka_service(settings)
    if single.pid() is not None:
        raise StackError(f"a single Kafka broker of this stack runs at {single.address}: "
                         "`msgstate stack down` first")
    home.mkdir(parents=True, exist_ok=True)
    (home / "brokers").write_text(f"{brokers}\n")
    nodes = kafka_nodes(settings)
    starting = [(node_id, node) for node_id, node in enumerate(nodes, 1) if node.pid() is None]
    marks = {node.name: log_marks(node.log_file.parent) for _id, node in starting}
    if starting:
        libs = kafka_dist.fetch(settings.stack_dir)
        java = kafka_dist.java()
        cluster_id = home / "cluster.id"
        voters = ",".join(f"{node_id}@127.0.0.1:{node.ports[1]}" for node_id, node in enumerate(nodes, 1))
        jvms = {}
        for node_id, node in starting:
            _refuse_busy_ports(node)
            jvms[node_id] = _kafka_files(node, libs, java, _server_properties(
                node.ports[0], node.ports[1], node.home / "data", settings.partitions,
                node_id=node_id, voters=voters, brokers=brokers))
        if not cluster_id.exists():
            jvm = jvms[starting[0][0]]
            uuid = _run([*jvm, "kafka.tools.StorageTool", "random-uuid"], starting[0][1], "random-uuid")
            cluster_id.write_text(uuid.strip().splitlines()[-1] + "\n")
        # Every node's storage formatted with the one cluster id: one JVM each, side by side.
        formats = [(node, subprocess.Popen(
            [*jvms[node_id], "kafka.tools.StorageTool", "format", "-t", cluster_id.read_text().strip(),
             "-c", str(node.home / "server.properties"), "-g"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            for node_id, node in starting]
        for node, proc in formats:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                with node.log_file.open("ab") as log:
                    log.write(out)
                raise StackError(f"{node.name} storage format failed (exit {proc.returncode}); "
                                 f"see {node.log_file}")
        for node_id, node in starting:
            _spawn_kafka(node, java, jvms[node_id])
    if wait:
        await_kafka_cluster(settings, marks)


def await_kafka_cluster(settings: Settings, marks: dict[str, dict[Path, int]] | None = None,
                        timeout: float = KAFKA_CLUSTER_START_TIMEOUT) -> None:
    """Until every broker of the local cluster is registered and unfenced, and every partition's
    replicas are all in sync again (a restarted broker caught up: the next one may fail)."""
    nodes = kafka_nodes(settings)
    deadline = time.monotonic() + timeout
    for node_id, node in enumerate(nodes, 1):
        def answers(node_id: int = node_id, node: Service = node) -> bool:
            return port_in_use(node.ports[0]) and node_id in kafka_ready(settings.kafka)
        _await(node, answers, max(1.0, deadline - time.monotonic()),
               (marks or {}).get(node.name, log_marks(node.log_file.parent)))
    while (behind := under_replicated(settings.kafka)):
        if time.monotonic() > deadline:
            raise StackError(f"Kafka at {settings.kafka}: partitions {', '.join(sorted(behind)[:5])} "
                             f"have replicas out of sync after {timeout:.0f} s; see {nodes[0].home.parent}")
        time.sleep(0.25)


def _admin(bootstrap: str, timeout: float) -> Any:
    from kafka.admin import KafkaAdminClient

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    ms = int(timeout * 1000)
    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=ms,
                            bootstrap_timeout_ms=ms, client_id="msgstate-stack")


def under_replicated(bootstrap: str, timeout: float = 3.0) -> set[str]:
    """`topic-partition` of every partition with a replica out of the ISR (or {"?"} when no
    broker answers)."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, timeout)
    except KafkaError:
        return {"?"}
    try:
        topics = admin.describe_topics()
    except KafkaError:
        return {"?"}
    finally:
        admin.close()
    return {f"{t['name']}-{p['partition_index']}" for t in topics for p in t["partitions"]
            if set(p["replica_nodes"]) - set(p["isr_nodes"])}


def kafka_ready(bootstrap: str, timeout: float = 3.0) -> set[int]:
    """The node ids of the brokers the cluster lists as registered and unfenced ({} when no
    broker answers)."""
    from kafka.errors import KafkaError

    try:
        admin = _admin(bootstrap, timeout)
    except KafkaError:
        return set()
    try:
        brokers = admin.describe_cluster().get("brokers") or []
    except KafkaError:
        return set()
    finally:
        admin.close()
    return {int(b["broker_id"]) for b in brokers if not b.get("is_fenced")}


def _service(settings: Settings, which: str) -> Service:
    if which not in SERVICES:
        raise StackError(f"unknown service {which!r}: one of {', '.join(SERVICES)}")
    return kafka_service(settings) if which == "kafka" else redis_service(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    brokers = kafka_nodes(settings)
    if brokers:
        ready = kafka_ready(settings.kafka)
        rows = [ServiceStatus(node.name, node.address, node.pid(),
                              node_id in ready and port_in_use(node.ports[0]), node.log_file)
                for node_id, node in enumerate(brokers, 1)]
    else:
        kafka = kafka_service(settings)
        rows = [ServiceStatus(kafka.name, kafka.address, kafka.pid(),
                              probes.kafka_answers(kafka.address, timeout=2.0), kafka.log_file)]
    nodes = cluster_nodes(settings)
    if not nodes:
        redis = redis_service(settings)
        return [*rows, ServiceStatus(redis.name, redis.address, redis.pid(),
                                     probes.redis_answers(settings.redis, timeout=1.0), redis.log_file)]
    return [*rows, *(ServiceStatus(node.name, node.address, node.pid(), _cluster_ok(node),
                                   node.log_file) for node in nodes)]


def _start_redis(service: Service, extra: list[str] | None = None) -> None:
    if service.pid() is not None or probes.redis_answers(service.address, timeout=1.0):
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed: apt-get install -y redis-server (./dev does it)")
    _refuse_busy_ports(service)
    data = service.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (service.home / "logs").mkdir(parents=True, exist_ok=True)
    port = service.ports[0]
    # The AOF grows by about 1 KB per response (the outbox entries, added and trimmed again,
    # and each script's write effects) while the data set stays small. At Redis's default of
    # 64 MB the AOF was rewritten every ~60,000 responses: a forked process compressing the
    # data set, taking a core for seconds from the rest of a small machine.
    _spawn(service, [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
        "--auto-aof-rewrite-min-size", AOF_REWRITE_MIN_SIZE,
        "--save", "", "--protected-mode", "yes", "--logfile", "", *(extra or []),
    ])


def _start_kafka(service: Service, settings: Settings) -> None:
    if service.pid() is not None or (port_in_use(service.ports[0])
                                     and probes.kafka_answers(service.address, timeout=2.0)):
        return
    if kafka_nodes(settings):
        raise StackError(f"a Kafka cluster of this stack was set up from {service.address}: "
                         "`msgstate stack up` starts it")
    libs = kafka_dist.fetch(settings.stack_dir)
    java = kafka_dist.java()
    _refuse_busy_ports(service)
    port, controller = service.ports
    jvm = _kafka_files(service, libs, java,
                       _server_properties(port, controller, service.home / "data", settings.partitions))
    cluster_id = service.home / "cluster.id"
    if not cluster_id.exists():
        uuid = _run([*jvm, "kafka.tools.StorageTool", "random-uuid"], service, "random-uuid")
        cluster_id.write_text(uuid.strip().splitlines()[-1] + "\n")
    _run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id.read_text().strip(),
          "-c", str(service.home / "server.properties"), "-g"], service, "storage format")
    _spawn_kafka(service, java, jvm)


def _kafka_files(service: Service, libs: Path, java: str, properties: str) -> list[str]:
    """Write a broker's folders, server.properties and log4j2 config; the JVM's command line for
    Kafka's tools (without the class)."""
    logs = service.home / "logs"
    (service.home / "data").mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    (service.home / "server.properties").write_text(properties)
    log4j = service.home / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    return [java, f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={logs}", "-cp", f"{libs}/*"]


def _spawn_kafka(service: Service, java: str, jvm: list[str]) -> None:
    _spawn(service, [java, "-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
                     *jvm[1:], "kafka.Kafka", str(service.home / "server.properties")])


def _server_properties(port: int, controller: int, data: Path, partitions: int, node_id: int = 1,
                       voters: str = "", brokers: int = 1) -> str:
    factor, min_isr = replication_for(brokers)
    small = [
        # Three JVMs on two cores: fewer threads each than Kafka's defaults (3 network, 8 io).
        "num.network.threads=2",
        "num.io.threads=2",
        "background.threads=2",
        "log.cleaner.dedupe.buffer.size=16777216",
    ] if brokers > 1 else []
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters or f'{node_id}@127.0.0.1:{controller}'}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data}",
        f"num.partitions={partitions}",
        f"default.replication.factor={factor}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={factor}",
        "offsets.topic.num.partitions=1",
        f"transaction.state.log.replication.factor={factor}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={factor}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        *small,
        "",
    ])


def _spawn(service: Service, argv: list[str]) -> None:
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    with service.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    service.pid_file.write_text(f"{proc.pid}\n")


def _run(argv: list[str], service: Service, what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        with service.log_file.open("a") as log:
            log.write(done.stdout + done.stderr)
        raise StackError(f"{service.name} {what} failed (exit {done.returncode}); see {service.log_file}")
    return done.stdout


def _await(service: Service, answers: Callable[[], bool], timeout: float,
           marks: dict[Path, int]) -> None:
    deadline = time.monotonic() + timeout
    while not answers():
        if service.pid() is None:
            reason = exit_reason(marks)
            raise StackError(f"{service.name} exited while starting at {service.address}"
                             + (f" ({reason})" if reason else "") + f"; see {service.log_file}")
        if time.monotonic() > deadline:
            raise StackError(f"{service.name} did not answer at {service.address} within "
                             f"{timeout:.0f} s; see {service.log_file}")
        time.sleep(0.25)


_FAILURE = re.compile(r"(?:Exception|Error): (?P<why>.+)$|(?P<line>.*(?:Could not|FATAL|Fatal).*)$")


def log_marks(logs: Path) -> dict[Path, int]:
    """Where each log of a service (Kafka's server.log, the captured stdout) ends now."""
    marks = {}
    for log in (logs / "server.log", logs / "stdout.log"):
        try:
            marks[log] = log.stat().st_size
        except OSError:
            marks[log] = 0
    return marks


def exit_reason(marks: dict[Path, int]) -> str | None:
    """The first failure a service logged since `marks`, so a start that dies names why
    (a busy port, a bad data dir) without opening the file; older runs' lines are skipped."""
    for log, start in marks.items():
        try:
            with log.open("rb") as handle:
                handle.seek(start)
                lines = handle.read(1 << 20).decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        for line in lines:
            found = _FAILURE.search(line.strip())
            if found:
                return (found.group("why") or found.group("line")).strip()[:300]
    return None


def _refuse_busy_ports(service: Service) -> None:
    for port in service.ports:
        if port_in_use(port):
            raise StackError(f"{service.name}: port {port} is already in use by a process this "
                             f"stack did not start (stack dir {service.home.parent})")


def _stop(pid: int, service: Service) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already (killed by a fault run)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)
    for port in service.ports:
        _await_port_free(port)


def _await_port_free(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    # Not our child (started by an earlier command): init reaps it; a zombie counts as gone.
    state = _proc_state(pid)
    return state is not None and state != "Z"


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if _proc_state(pid) in (None, "Z"):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (Kafka's client and controller ports)."""
    return free_ports(2)


def free_ports(count: int) -> int:
    """A port p with p .. p+count-1 free on loopback.

    Drawn below the kernel's ephemeral range, so an outgoing connection made between
    this check and the server's bind cannot take any of them; ports handed out by this
    process never overlap (a private stack asks for all its ports before starting)."""
    low = _ephemeral_low()
    upper = low - count if low > 12000 else 65000  # an odd kernel range: draw from anywhere
    for _ in range(1000):
        port = random.randrange(10000, upper)
        ports = set(range(port, port + count))
        if ports & _handed_out:
            continue
        if all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return port
    raise StackError(f"no {count} adjacent free ports found on 127.0.0.1")


_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not port_in_use(port)
