"""Slow clients against a real ``persona-core serve``: a request's headers and body have a
deadline, and a flood of stalled connections under a 1,024-file limit fails no normal request.
Each cut is in the server's log. (The measured run is ``make bench``'s bench_serving.)"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from slow_clients import SlowClients, seed, start_serve, stop, timed_gets

pytestmark = pytest.mark.slow


def test_slow_headers_and_bodies_are_cut_within_their_timeouts_and_logged(tmp_path: Path) -> None:
    seed(tmp_path)
    env = {"PERSONA_HTTP_HEADER_TIMEOUT_S": "1", "PERSONA_HTTP_BODY_TIMEOUT_S": "1"}
    proc, port = start_serve(tmp_path, tmp_path / "serve.log", env=env, workers=1)
    try:
        headers = SlowClients(port, 20)
        bodies = SlowClients(
            port,
            5,
            head=b"POST /v1/personas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n{",
            line=b" ",
            every_s=0.2,
        )
        try:
            # Meanwhile the server answers others at once.
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            assert headers.wait_all_cut(4), f"{headers.open} slow-header clients still connected"
            assert bodies.wait_all_cut(4), f"{bodies.open} slow-body clients still connected"
            assert max(headers.cut_after) < 3
            assert max(bodies.cut_after) < 4
        finally:
            headers.close()
            bodies.close()
        time.sleep(1.5)  # cuts are logged once a second
        log = (tmp_path / "serve.log").read_text()
        assert "20 HTTP connection(s): request headers not complete within 1 s" in log
        assert "5 HTTP connection(s): request body under 1024 bytes in 1 s" in log
    finally:
        stop(proc)


def test_1100_stalled_connections_under_a_1024_file_limit_fail_no_request(tmp_path: Path) -> None:
    """Once 1,100 slow connections made 200 of 200 normal requests fail, with nothing logged."""
    key = seed(tmp_path)
    proc, port = start_serve(tmp_path, tmp_path / "serve.log", workers=1, open_files=1024)
    try:
        slow = SlowClients(port, 1100)
        try:
            url = f"http://127.0.0.1:{port}/v1/personas/bench-serving/versions/1/pack"
            _, failed = timed_gets(url, {"X-API-Key": key}, 200, fresh=True)
            assert failed == 0
        finally:
            slow.close()
        time.sleep(1.5)
        assert "the connection cap" in (tmp_path / "serve.log").read_text()
    finally:
        stop(proc)
