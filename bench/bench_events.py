"""Events on the embedded default (SQLite + folder): state change to webhook receipt through
`serve`'s dispatcher, and how soon a waiting long-poll of GET /v1/events wakes after a change."""

from __future__ import annotations

import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentiles, record
from persona_core.publish import publish_pack
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from persona_core.webhooks import WebhookStore
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.server import BackgroundServer

CHANGES = 40


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = ApiSettings(env="test", home=home, webhook_allow_private=True)
        meta = SqlMetadataStore.open(settings.resolved_database_url)
        blobs = LocalBlobStore(home / "blobs", b"k" * 32, "http://x")
        meta.create_persona("alice", {})
        key = ApiKeyStore.of(meta).create_api_key("bench", ["read"])[1]
        received: dict[int, float] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                received[int(self.headers["webhook-id"])] = time.monotonic()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/"
        WebhookStore(meta.database).create(hook_url, created_by="bench")
        latency: list[float] = []
        wake: list[float] = []
        with BackgroundServer(settings, metadata=meta, blobs=blobs, with_grpc=False, dispatch=True) as server:
            client = httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}, timeout=30)
            cursor = client.get("/v1/events").json()["next_cursor"]
            for version in range(1, CHANGES + 1):
                answer: dict[str, Any] = {}

                def wait(after: int = cursor, into: dict[str, Any] = answer) -> None:
                    into["page"] = client.get("/v1/events", params={"after": after, "timeout": 10}).json()
                    into["at"] = time.monotonic()

                waiter = threading.Thread(target=wait)
                waiter.start()
                time.sleep(0.15)
                meta.create_version("alice", {"files": []})
                publish_pack(meta, blobs, make_pack(blobs, "alice", version, n_anchors=6))
                changed = time.monotonic()
                waiter.join(15)
                event_id = answer["page"]["events"][0]["id"]
                cursor = answer["page"]["next_cursor"]
                wake.append(answer["at"] - changed)
                deadline = time.monotonic() + 30
                while event_id not in received and time.monotonic() < deadline:
                    time.sleep(0.005)
                latency.append(received.get(event_id, deadline) - changed)
            client.close()
        receiver.shutdown()
        meta.close()
    lat, wk = percentiles(latency, 1e3), percentiles(wake, 1e3)
    record("events", {
        "events_webhook_latency_p50_ms": lat["p50"],
        "events_webhook_latency_p99_ms": lat["p99"],
        "events_webhook_latency_goal_p99_ms": 2000,
        "events_longpoll_wake_p50_ms": wk["p50"],
        "events_longpoll_wake_max_ms": wk["max"],
        "events_longpoll_wake_goal_ms": 500,
        "events_changes": CHANGES,
    })


if __name__ == "__main__":
    main()
