"""Slow HTTP clients and a real ``persona-core serve`` to point them at: what
tests/api/test_slow_clients.py, the ``make faults`` slow-clients case and ``make bench``'s
bench_serving drive."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from persona_core.publish import publish_pack
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from registry_api.api_keys import create_key
from registry_api.config import ApiSettings

PERSONA = "bench-serving"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(home: Path) -> str:
    """A published persona in ``home``'s embedded stores; returns a build-scoped API key."""
    home.mkdir(parents=True, exist_ok=True)
    settings = ApiSettings(home=home)
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    blobs = LocalBlobStore(home / "blobs", settings.signing_secret.get_secret_value().encode(), "")
    try:
        meta.create_persona(PERSONA, {})
        meta.create_version(PERSONA, {"files": []})
        publish_pack(meta, blobs, make_pack(blobs, PERSONA, 1, n_anchors=12))
        return create_key(meta, "bench", ["build"])[1]
    finally:
        meta.close()


def start_serve(
    home: Path,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int | None = None,
    grpc_port: int = 0,
    open_files: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """``persona-core serve`` on a free port, ready; its log (stderr) goes to ``log``."""
    port = free_port()
    cli = Path(sys.executable).with_name("persona-core")
    args = [str(cli), "--home", str(home), "serve", "--port", str(port), "--grpc-port", str(grpc_port)]
    if workers is not None:
        args += ["--workers", str(workers)]

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=limit_files,  # noqa: PLW1509 - one setrlimit call before exec
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"serve did not come up:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlowClients:
    """``n`` sockets that each send a partial request, then ``line`` every ``every_s`` (a
    header line, or body bytes); ``cut_after`` says when the server closed each one."""

    def __init__(
        self,
        port: int,
        n: int,
        *,
        head: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        line: bytes = b"X-Slow: 1\r\n",
        every_s: float = 1.0,
    ) -> None:
        self.opened_at: dict[socket.socket, float] = {}
        self.cut_after: list[float] = []
        self.refused = 0
        self._line, self._every_s = line, every_s
        self._selector = selectors.DefaultSelector()
        for _ in range(n):
            sock = socket.socket()
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(head)
            except OSError:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            self.opened_at[sock] = time.monotonic()
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def open(self) -> int:
        return len(self.opened_at)

    def _closed(self, sock: socket.socket) -> None:
        self.cut_after.append(time.monotonic() - self.opened_at.pop(sock))
        self._selector.unregister(sock)
        sock.close()

    def _run(self) -> None:
        next_line = time.monotonic() + self._every_s
        while not self._stop.is_set() and self.opened_at:
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(4096):
                        continue  # an answer (e.g. a 400 after the cut): the close follows
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._closed(sock)
            if time.monotonic() >= next_line:
                next_line += self._every_s
                for sock in list(self.opened_at):
                    try:
                        sock.send(self._line)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(sock)

    def wait_all_cut(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.opened_at and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.opened_at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in list(self.opened_at):
            self._selector.unregister(sock)
            sock.close()
        self.opened_at.clear()
        self._selector.close()


def timed_gets(url: str, headers: dict[str, str], n: int, *, fresh: bool = False) -> tuple[list[float], int]:
    """``n`` sequential GETs: their latencies (s) and how many failed (an error or not 200);
    ``fresh``: a new connection for each."""
    samples, failed = [], 0
    client = httpx.Client(timeout=10)
    try:
        for _ in range(n):
            start = time.perf_counter()
            try:
                r = httpx.get(url, headers=headers, timeout=10) if fresh else client.get(url, headers=headers)
                failed += r.status_code != 200
            except httpx.HTTPError:
                failed += 1
            samples.append(time.perf_counter() - start)
    finally:
        client.close()
    return samples, failed
