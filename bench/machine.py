"""One line that says what machine a benchmark ran on, for every report."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> str:
    """Python version, CPU model, CPU count and the load average now."""
    cpu = platform.processor() or platform.machine()
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return f"Python {platform.python_version()} on {cpu}, {os.cpu_count()} CPUs, load average {load:.2f}"
