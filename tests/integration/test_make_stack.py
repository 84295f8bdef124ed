"""`make stack` / `make stack-down` (scripts/stack.py, what the two targets run) as a platform
engineer uses them: `up` starts the whole topology detached, on servers of its own, and prints
addresses and an admin key that work; a second `up` is refused while it runs; `down` stops
every process it started and says so."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from services import free_ports

from persona_core.client import RegistryClient

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.dagster, pytest.mark.slow, pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]


def _stack(action: str, root: Path, ports: list[int]) -> subprocess.CompletedProcess[str]:
    flags = ("--registry-port", "--grpc-port", "--dagster-port", "--code-port")
    argv = [sys.executable, str(ROOT / "scripts" / "stack.py"), action, "--dir", str(root)]
    if action == "up":
        argv += [str(x) for pair in zip(flags, ports, strict=True) for x in pair]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=420, check=False)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False


@pytest.mark.timeout(600)
def test_stack_up_serves_and_stack_down_stops_everything() -> None:
    # Not under pytest's tmp_path: its folders are private to this user, and PostgreSQL runs as
    # a user of its own when the tests run as root (as `make stack` in a checkout can).
    with tempfile.TemporaryDirectory(prefix="make-stack-") as tmp:
        Path(tmp).chmod(0o755)
        _up_and_down(Path(tmp) / "stack", free_ports(4))


def _up_and_down(root: Path, ports: list[int]) -> None:
    pids: list[int] = []
    try:
        up = _stack("up", root, ports)
        assert up.returncode == 0, up.stderr[-3000:]
        state = json.loads((root / "stack.json").read_text())
        pids = [*state["groups"], *state["servers"].values()]
        key = re.search(r"admin key\s+(\S+)", up.stdout)
        assert key, up.stdout
        registry = f"http://127.0.0.1:{ports[0]}"
        assert registry in up.stdout
        assert httpx.get(f"{registry}/readyz", timeout=30).status_code == 200
        with RegistryClient(registry, key.group(1)) as client:
            assert client.list_personas().items == []
        ui = httpx.get(f"http://127.0.0.1:{ports[2]}/server_info", timeout=30)
        assert ui.status_code == 200, ui.text

        again = _stack("up", root, ports)
        assert again.returncode == 1
        assert "make stack-down" in again.stderr
        assert httpx.get(f"{registry}/readyz", timeout=30).status_code == 200  # the first one still serves
    finally:
        down = _stack("down", root, ports)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    assert pids
    assert [pid for pid in pids if _alive(pid)] == []
    assert not (root / "stack.json").exists()
    assert (root / "logs").is_dir()  # kept for a post-mortem
