"""Worker subprocesses for integration tests: started with the test's environment, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from msgstate.workers.config import Settings

from ..conftest import worker_env


class WorkerProcess:
    """A `python -m …` subprocess whose output goes to a file the failure message can show."""

    def __init__(self, settings: Settings, argv: Sequence[str], name: str = "worker",
                 env: Mapping[str, str] | None = None) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix=f"msgstate-{name}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *argv], env={**worker_env(settings), **(env or {})}, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Fail the test at once, with the worker's output, if it died."""
        if not self.alive():
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")

    def kill(self) -> int:
        """SIGKILL, as a crash would. Returns the exit code: -SIGKILL if it ran until then."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return int(self.proc.returncode)

    def output(self, tail: int = 4000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]
