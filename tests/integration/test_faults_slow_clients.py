"""``make faults``, slow clients: 1,000 connections that each send half a request header and
then a line a second, against a real ``persona-core serve`` with its shipped limits. Normal
requests meanwhile all answer, and every slow client is cut within the header timeout. Adds
its row to the faults table."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from slow_clients import PERSONA, SlowClients, seed, start_serve, stop, timed_gets
from test_faults import outage_row

from registry_api.config import ApiSettings

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SLOW = 1000


def test_a_thousand_slow_header_clients_fail_no_request_and_are_cut(tmp_path: Path) -> None:
    key = seed(tmp_path)
    proc, port = start_serve(tmp_path, tmp_path / "serve.log")
    timeout_s = ApiSettings().http_header_timeout_s
    try:
        slow = SlowClients(port, SLOW)
        try:
            url = f"http://127.0.0.1:{port}/v1/personas/{PERSONA}/versions/1/pack"
            _, failed = timed_gets(url, {"X-API-Key": key}, 200)
            _, failed_fresh = timed_gets(url, {"X-API-Key": key}, 50, fresh=True)
            all_cut = slow.wait_all_cut(timeout_s + 3)
            latest_cut = max(slow.cut_after, default=float("inf"))
        finally:
            slow.close()
        time.sleep(1.5)  # cuts are logged once a second
        logged = "request headers not complete" in (tmp_path / "serve.log").read_text()
    finally:
        stop(proc)
    outage_row("slow clients", recovered=all_cut and failed + failed_fresh == 0)
    assert slow.refused == 0
    assert failed + failed_fresh == 0
    assert all_cut, f"{slow.open} slow clients still connected after {timeout_s + 3} s"
    assert latest_cut < timeout_s + 2
    assert logged
