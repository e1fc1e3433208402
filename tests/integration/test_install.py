"""The built wheel installs everything under one name, `msgstate`: in a fresh virtual
environment that has packages of its own named `schemas`, `streams` and `workers` (as a chat
backend often has), the SDK and `msgstate replay` run, and those packages stay the backend's."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ..conftest import ROOT

OWN = ("schemas", "streams", "workers")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(out),
                    str(ROOT)], check=True, timeout=900)
    (built,) = out.glob("msgstate-*.whl")
    return built


@pytest.mark.timeout(1200)
def test_the_wheel_installs_one_name_beside_the_backends_own_packages(wheel: Path,
                                                                      tmp_path: Path) -> None:
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"msgstate"}

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    target = Path(subprocess.run([str(python), "-c", where], check=True, capture_output=True,
                                 text=True).stdout.strip())
    # The dependencies come from the test's own environment (no download); msgstate itself only
    # from the wheel.
    (target / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   timeout=300)
    for name in OWN:
        (target / name).mkdir()
        (target / name / "__init__.py").write_text(f"OWNER = 'the chat backend'\nNAME = {name!r}\n")

    records = tmp_path / "responses.jsonl"
    records.write_bytes(
        b'{"id":"r1","message_id":"m1","identity_id":"frodo","changes":'
        b'[{"operation":"add","type":"Set","name":"reactions","value":"+1"}]}\n'
        b'not json\n')
    script = f"""
import schemas, streams, workers
assert (schemas.OWNER, streams.NAME, workers.NAME) == ('the chat backend', 'streams', 'workers')
import msgstate
from msgstate import CRDT_TYPES, AsyncClient, Client, MessageTypeModel, custom_states, new_response_id
assert msgstate.__version__ and msgstate.__file__.startswith({str(target)!r})
class Poll(MessageTypeModel):
    def register_all_states(self) -> None:
        self.responses.register_state("poll_choice", CRDT_TYPES.FIRST_WRITER_WINS)
assert new_response_id() != new_response_id()
assert (Client.__name__, AsyncClient.__name__) == ('Client', 'AsyncClient') and custom_states is not None
print(msgstate.__version__)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == subprocess.run(
        [sys.executable, "-c", "import msgstate; print(msgstate.__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()

    changes = tmp_path / "changes.jsonl"
    replayed = subprocess.run([str(env_dir / "bin" / "msgstate"), "replay", str(records), "--changes",
                               str(changes)], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    expected = subprocess.run([sys.executable, "-m", "msgstate.workers", "replay", str(records)], cwd=ROOT,
                              capture_output=True, check=True, timeout=120)
    assert replayed.stdout == expected.stdout
    assert b'"new":["+1"]' in changes.read_bytes()
    installed = {path.name for path in target.iterdir()}
    assert installed >= {"msgstate", *OWN} and "bench" not in installed
