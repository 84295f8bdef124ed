"""`persona-core serve --workers 2`: an erasure run by one worker leaves no worker serving the
erased pack. Both workers serve it (and cache it) under a steady stream of GETs; from the moment
DELETE returns, every GET from either worker answers 410."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from services import free_ports

from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack
from registry_api.key_store import ApiKeyStore

pytestmark = pytest.mark.slow
PACK = "/v1/personas/alice/versions/1/pack"
LATEST = "/v1/personas/alice/versions/latest/pack"


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


def _worker_of(conn: http.client.HTTPConnection, server_port: int, workers: list[int]) -> int:
    """The worker process holding the server end of ``conn`` (from /proc/net/tcp and its fds)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        local, remote = int(cols[1].split(":")[1], 16), int(cols[2].split(":")[1], 16)
        if (local, remote) == (server_port, client_port):
            inodes.add(f"socket:[{cols[9]}]")
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


@dataclass
class Reader:
    """GETs the pack over one kept-alive connection until stopped: (sent, status) per request."""

    conn: http.client.HTTPConnection
    key: str
    seen: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def get(self, path: str) -> int:
        self.conn.request("GET", path, headers={"X-API-Key": self.key})
        response = self.conn.getresponse()
        response.read()
        return response.status

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            self.seen.append((sent, self.get(PACK if len(self.seen) % 2 else LATEST)))


def test_no_worker_serves_an_erased_pack_once_delete_returns(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    meta.create_persona("alice", {})
    meta.create_version("alice", {"files": []})
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1))
    key = ApiKeyStore.of(meta).create_api_key("admin", ["admin"])[1]
    meta.close()
    (port,) = free_ports(1)
    cli = Path(sys.executable).with_name("persona-core")
    proc = subprocess.Popen(
        [str(cli), "--home", str(tmp_path), "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    readers: list[Reader] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                probe.request("GET", "/healthz")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        # Kept-alive connections until both workers hold at least one (the kernel picks).
        by_worker: dict[int, list[Reader]] = {pid: [] for pid in workers}
        for _ in range(60):
            reader = Reader(http.client.HTTPConnection("127.0.0.1", port, timeout=10), key)
            assert reader.get(PACK) == 200  # also opens the connection
            by_worker[_worker_of(reader.conn, port, workers)].append(reader)
            readers.append(reader)
            if all(by_worker.values()) and len(readers) >= 4:
                break
        assert all(by_worker.values()), "the kernel gave every connection to one worker"
        threads = [threading.Thread(target=r.run, daemon=True) for r in readers]
        for t in threads:
            t.start()
        time.sleep(1.0)  # both workers serving the pack from memory

        eraser = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"reason": "data subject request"})
        deleting = time.monotonic()
        eraser.request("DELETE", "/v1/personas/alice", body=body,
                       headers={"X-API-Key": key, "content-type": "application/json"})
        response = eraser.getresponse()
        report = json.loads(response.read())
        returned = time.monotonic()
        assert (response.status, report["state"]) == (200, "erased"), report
        time.sleep(0.5)
        for reader in readers:
            reader.stop.set()
        for t in threads:
            t.join(timeout=10)
        for pid, mine in by_worker.items():
            statuses_before = {status for r in mine for sent, status in r.seen if sent < deleting}
            statuses_after = [status for r in mine for sent, status in r.seen if sent >= returned]
            assert statuses_before == {200}, (pid, statuses_before)
            assert statuses_after, f"worker {pid} got no request after DELETE returned"
            assert set(statuses_after) == {410}, (pid, statuses_after)
            # And right away, on every connection: GET pack and `latest` are 410.
            for r in mine:
                assert (r.get(PACK), r.get(LATEST)) == (410, 410)
    finally:
        for reader in readers:
            reader.stop.set()
            reader.conn.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
