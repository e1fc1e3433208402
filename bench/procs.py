"""The systems under test as subprocesses, and their CPU time and peak memory (psutil)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

from msgstate.workers.config import Settings

WORKER = ("-m", "msgstate.workers", "worker", "-l", "warn")


def peer_argv(system: str) -> Sequence[str]:
    return WORKER if system == "worker" else ("-m", "msgstate.bench.peers", system)


def environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MSGSTATE_KAFKA": settings.kafka,
        "MSGSTATE_REDIS": settings.redis,
        "MSGSTATE_STACK_DIR": str(settings.stack_dir.resolve()),
        "MSGSTATE_PARTITIONS": str(settings.partitions),
        "MSGSTATE_TOPIC_PREFIX": settings.topics.prefix,
        "MSGSTATE_KEY_PREFIX": settings.key_prefix,
        "MSGSTATE_APP_ID": settings.app_id,
    })
    return env


class Measured:
    """A running system: its process, CPU seconds on demand, peak RSS sampled in a thread."""

    def __init__(self, settings: Settings, system: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, *peer_argv(system)], env=environment(settings),
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
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def alive(self) -> bool:
        return self.proc.poll() is None

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
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
