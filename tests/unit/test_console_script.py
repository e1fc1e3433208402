"""The installed `msgstate` console script works from any directory, not only the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_every_command_imports_from_another_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("msgstate")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    for command in ("stack", "worker", "publish", "summary", "replay", "demo", "reliability", "apps"):
        assert f"  {command}" in done.stdout
