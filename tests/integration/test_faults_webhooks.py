"""``make faults``, webhooks: the dispatcher SIGKILLed at seeded points while events keep
coming, and the receiver down (answering 503) for three trials and back. Every event
reaches the receiver, every delivery verifies, duplicates carry the same webhook-id, nothing is
left pending. Adds its row to the faults table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_faults import COLUMNS, TALLY, report

from persona_core.store.events import emit
from persona_core.store.metadata import SqlMetadataStore
from persona_core.webhooks import WebhookStore

pytestmark = [pytest.mark.faults, pytest.mark.slow]
CHILD = Path(__file__).with_name("faults_dispatch_child.py")
KILLS = 12
SEED = 17


class Receiver:
    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.ids: list[int] = []
        self.bad = 0
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id, stamp = self.headers["webhook-id"], self.headers["webhook-timestamp"]
                mac = hmac.new(receiver.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
                if self.headers["webhook-signature"] != "v1," + base64.b64encode(mac).decode():
                    receiver.bad += 1
                if receiver.down:
                    self.send_response(503)
                else:
                    receiver.ids.append(int(msg_id))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _emit(meta: SqlMetadataStore, n: int, start: int) -> list[int]:
    with meta.database.tx(write=True) as conn:
        for i in range(n):
            emit(conn, "version.published", "alice", start + i, {})
    return list(range(start, start + n))


def _child(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[str]:
    # Its log (a warning per failed try) goes to a file: a full pipe would block it.
    with log.open("a") as err:
        proc = subprocess.Popen([sys.executable, str(CHILD), *args], env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the dispatcher child never started"
    assert proc.stdout.readline().strip() == "GO", log.read_text()
    return proc


def test_a_killed_dispatcher_and_a_receiver_down_lose_no_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    meta = SqlMetadataStore.open(url)
    hooks = WebhookStore(meta.database)
    probe = hooks.create("http://127.0.0.1:1/x", created_by="t")
    hooks.delete(probe.id)  # only its generated secret is wanted
    secret = probe.secret
    receiver = Receiver(secret)
    hooks.create(f"http://127.0.0.1:{receiver.port}/hook", created_by="t", secret=secret)
    env = {**os.environ, "PERSONA_DATABASE_URL": url, "PERSONA_ENV": "test"}
    rng = random.Random(SEED)
    tally = dict.fromkeys(COLUMNS, 0)
    next_version = 1
    try:
        for trial in range(KILLS):
            next_version += len(_emit(meta, 5, next_version))
            receiver.down = trial in (4, 5, 6)  # down for three trials, then back
            proc = _child(env, tmp_path / "child.log")
            time.sleep(rng.uniform(0.05, 0.6))
            next_version += len(_emit(meta, 3, next_version))
            proc.send_signal(signal.SIGKILL)
            tally["trials"] += 1
            tally["faults"] += int(proc.wait(30) == -signal.SIGKILL)
            proc.communicate()
        receiver.down = False
        drain = _child(env, tmp_path / "child.log", "drain")
        assert drain.stdout is not None
        ready, _, _ = select.select([drain.stdout], [], [], 60)
        assert ready, "the drain never finished"
        assert drain.stdout.readline().strip() == "DONE", (tmp_path / "child.log").read_text()
        drain.wait(60)
        drain.communicate()
    finally:
        receiver.close()
    expected = set(range(1, next_version))
    got = Counter(receiver.ids)
    tally["lost"] = len(expected - set(got))
    tally["corrupt"] = receiver.bad + len(set(got) - expected)
    tally["recoveries"] = int(not tally["lost"])
    TALLY["webhooks sqlite"] = tally
    report()
    duplicates = sum(c - 1 for c in got.values())
    print(f"webhooks: {len(expected)} events, {len(receiver.ids)} deliveries, {duplicates} repeated")
    meta.close()
    assert tally["faults"] >= 10
    assert (tally["lost"], tally["corrupt"], tally["stuck"]) == (0, 0, 0), tally
