"""``serve --workers N`` runs N HTTP worker processes (default: one per core), all answering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from services import free_ports

from registry_api.server import default_workers

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_default_is_one_worker_per_core() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))


def test_serve_starts_the_workers_it_is_asked_for(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    cli = Path(sys.executable).with_name("persona-core")
    proc = subprocess.Popen(
        [str(cli), "--home", str(tmp_path), "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        # uvicorn's supervisor spawns the workers (its resource tracker is not one of them).
        cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes() for p in _children(proc.pid)]
        workers = [c for c in cmdlines if b"spawn_main" in c]
        assert len(workers) == 2
        assert httpx.get(f"http://127.0.0.1:{port}/v1/personas", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
