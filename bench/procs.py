"""The systems under test as subprocesses, and the CPU time of every process a response costs:
the system's, Redis's, the broker's and the harness's own (psutil)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from msgstate.workers.config import Settings
from msgstate.workers.config import environment as deployment
from msgstate.workers.tools import stack as local_stack

WORKER = ("-m", "msgstate.workers", "worker", "-l", "warn")
BARE_PIPELINE = ("-m", "msgstate.bench.bare_pipeline")


def peer_argv(system: str, *args: str) -> Sequence[str]:
    if system == "worker":
        return WORKER
    if system == "bare_pipeline":
        return (*BARE_PIPELINE, *args)
    return ("-m", "msgstate.bench.peers", system)


def environment(settings: Settings) -> dict[str, str]:
    return {**os.environ, **deployment(settings), "MSGSTATE_STACK_DIR": str(settings.stack_dir.resolve())}


class Measured:
    """A running system: its process, CPU seconds on demand, peak RSS sampled in a thread."""

    def __init__(self, settings: Settings, system: str, log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, *peer_argv(system, *args)],
                                         env=environment(settings),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss)
            except psutil.Error:
                return

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far."""
        return cpu_of(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def suspend(self) -> None:
        """SIGSTOP: it takes no CPU and reads nothing until `resume`, while a backlog is laid."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGCONT)

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def _high_water_mark(self) -> int:
        # The kernel's own peak (VmHWM) catches spikes between two samples.
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        self.peak_rss = max(self.peak_rss, self._high_water_mark())
        self._stop.set()
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.killpg(self.proc.pid, signal.SIGCONT)  # a suspended process acts on it only then
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) of a process so far; 0 when it is unknown or gone."""
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def process_age(pid: int | None) -> float | None:
    """Seconds since the process started; None when it is unknown or gone."""
    if pid is None:
        return None
    try:
        return time.time() - psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def listening_pid(port: int) -> int | None:
    """The process listening on a TCP port of this machine (for a stack started elsewhere)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    return next((c.pid for c in connections
                 if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid), None)


def stack_pids(settings: Settings) -> dict[str, int | None]:
    """The pids of the broker and Redis the run uses: from the stack's pid files, else the
    process listening on their ports (a stack started by hand or by another checkout)."""
    found: dict[str, int | None] = {}
    for name, service in (("broker", local_stack.kafka_service(settings)),
                          ("redis", local_stack.redis_service(settings))):
        found[name] = service.pid() or listening_pid(service.ports[0])
    return found
