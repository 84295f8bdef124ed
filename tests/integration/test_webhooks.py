"""Webhook deliveries end to end: a receiver written from docs/webhooks.md alone (stdlib
http.server + hmac) verifies real deliveries; failed tries are retried and logged; a run of
failures disables the subscription; a URL that resolves to a private address at delivery time
is not called."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from persona_core.webhooks import DispatcherThread, WebhookStore


class Receiver:
    """What docs/webhooks.md tells an integrator to do, and nothing else."""

    def __init__(self, secret: str, status: int = 200) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.status = status
        self.verified: list[dict[str, Any]] = []
        self.rejected = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id, stamp = self.headers["webhook-id"], self.headers["webhook-timestamp"]
                signed = f"{msg_id}.{stamp}.".encode() + body
                expected = base64.b64encode(hmac.new(receiver.key, signed, hashlib.sha256).digest()).decode()
                given = [s.removeprefix("v1,") for s in self.headers["webhook-signature"].split(" ")]
                fresh = abs(time.time() - int(stamp)) <= 300
                if fresh and any(hmac.compare_digest(expected, g) for g in given):
                    receiver.verified.append({"webhook-id": msg_id, **json.loads(body)})
                else:
                    receiver.rejected += 1
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqlMetadataStore, LocalBlobStore]]:
    meta = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'p.db'}")
    blobs = LocalBlobStore(tmp_path / "blobs", b"k" * 32, "http://x")
    meta.create_persona("alice", {})
    meta.create_persona("bob", {})
    yield meta, blobs
    meta.close()


def _settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"env": "test", "webhook_allow_private": True, "webhook_retry_base_s": 0.05,
                            "webhook_retry_max_s": 0.2, "webhook_poll_s": 0.02}
    return Settings(**{**base, **overrides})


def _publish(meta: SqlMetadataStore, blobs: LocalBlobStore, persona_id: str) -> None:
    version = meta.create_version(persona_id, {"files": []}).version
    publish_pack(meta, blobs, make_pack(blobs, persona_id, version, n_anchors=6))


def _until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_receiver_written_from_the_docs_verifies_real_deliveries(
    stores: tuple[SqlMetadataStore, LocalBlobStore],
) -> None:
    meta, blobs = stores
    hooks = WebhookStore(meta.database)
    probe = hooks.create("http://127.0.0.1:1/x", created_by="t")
    receiver = Receiver(probe.secret)
    hooks.delete(probe.id)
    sub = hooks.create(receiver.url, created_by="t", secret=probe.secret, persona_ids=["alice"])
    dispatcher = DispatcherThread(meta.database, _settings()).start()
    try:
        _publish(meta, blobs, "bob")  # filtered out
        _publish(meta, blobs, "alice")
        _until(lambda: receiver.verified)
        time.sleep(0.2)
    finally:
        dispatcher.stop()
        receiver.close()
    assert receiver.rejected == 0
    assert [(d["type"], d["persona_id"], d["version"]) for d in receiver.verified] == [
        ("version.published", "alice", 1)
    ]
    assert receiver.verified[0]["webhook-id"] == str(receiver.verified[0]["id"])
    assert [a.status_code for a in hooks.attempts(sub.id)] == [200]


def test_failures_are_retried_logged_and_disable_the_subscription(
    stores: tuple[SqlMetadataStore, LocalBlobStore], caplog: pytest.LogCaptureFixture
) -> None:
    meta, blobs = stores
    hooks = WebhookStore(meta.database)
    receiver = Receiver(hooks.create("http://127.0.0.1:1/x", created_by="t").secret, status=503)
    sub = hooks.create(receiver.url, created_by="t")
    dispatcher = DispatcherThread(meta.database, _settings(webhook_disable_after=4)).start()
    try:
        _publish(meta, blobs, "alice")
        _until(lambda: not hooks.get(sub.id).enabled)
    finally:
        dispatcher.stop()
        receiver.close()
    state = hooks.get(sub.id)
    assert state.disabled_reason == "4 failed deliveries in a row"
    assert [a.attempt for a in hooks.attempts(sub.id)] == [1, 2, 3, 4]
    assert {a.status_code for a in hooks.attempts(sub.id)} == {503}
    secret = hooks.get(sub.id, with_secret=True).secret
    assert secret not in caplog.text
    assert secret not in repr(hooks.get(sub.id, with_secret=True))


def test_a_name_that_resolves_to_a_private_address_at_delivery_is_not_called(
    stores: tuple[SqlMetadataStore, LocalBlobStore],
) -> None:
    meta, blobs = stores
    hooks = WebhookStore(meta.database)
    sub = hooks.create("http://hooks.example.com/x", created_by="t")
    called: list[str] = []
    dispatcher = DispatcherThread(
        meta.database, _settings(webhook_allow_private=False, webhook_max_attempts=1),
        poster=lambda *a: called.append(a[0]),
        resolve=lambda *a, **k: [(2, 1, 6, "", ("10.0.0.9", 80))],
    ).start()
    try:
        _publish(meta, blobs, "alice")
        _until(lambda: hooks.attempts(sub.id))
    finally:
        dispatcher.stop()
    assert called == []
    assert "non-public address (10.0.0.9)" in (hooks.attempts(sub.id)[0].error or "")
