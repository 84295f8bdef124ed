"""``python -m registry_api`` as a user runs it: a real process on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_module_entry_point_installs_persona_core_logging(tmp_path: Path) -> None:
    """The server logs through persona-core's redacting handler: with PERSONA_LOG_JSON=1 every
    line it writes, uvicorn's included, is one JSON object (basicConfig would write plain text)."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")},
        "PERSONA_HOME": str(tmp_path),
        "PERSONA_LOG_JSON": "1",
        "PERSONA_SIGNING_SECRET": "main-test-signing-secret",
    }
    cmd = [sys.executable, "-m", "registry_api", "--port", str(port), "--grpc-port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "registry did not start"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    lines = [line for line in stderr.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]  # fails on any plain-text line
    assert any(d["logger"].startswith("uvicorn") and "running on" in d["message"] for d in docs), lines
    assert all({"ts", "level", "logger", "message"} <= d.keys() for d in docs)
