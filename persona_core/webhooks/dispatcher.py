"""The webhook dispatcher: turns new events into signed POSTs, at least once each.

One loop per process; a lease row in the database lets only one process dispatch at a time
(the registry's workers each run one, ``persona-core events serve`` runs one on its own), and
another takes over within ``webhook_lease_ttl_s`` when the holder dies. Everything it knows is in
the database: each subscription's fan-out cursor and each delivery's state, so a killed
dispatcher loses nothing; a POST that was answered but not yet recorded is sent again with the
same ``webhook-id`` (receivers de-duplicate on it)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from persona_core.settings import Settings
from persona_core.store.engine import Database
from persona_core.store.event_feed import read_feed
from persona_core.store.events import Event
from persona_core.webhooks.signing import sign
from persona_core.webhooks.store import Delivery, Subscription, WebhookStore
from persona_core.webhooks.urls import WebhookUrlRefusedError, check_webhook_url

__all__ = ["LEASE_NAME", "Dispatcher", "DispatcherThread", "PostResult", "event_body", "retry_delay_s"]

log = logging.getLogger("persona_core.webhooks")
LEASE_NAME = "webhooks"
_FAN_OUT_PAGE = 200
_DUE_PAGE = 64
_POSTERS = 8


@dataclass(frozen=True, slots=True)
class PostResult:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


Poster = Callable[[str, dict[str, str], bytes, float], PostResult]


def event_body(event: Event) -> bytes:
    """The JSON a delivery carries (the event feed's item, compact)."""
    doc = {
        "id": event.id,
        "type": event.type,
        "at": event.at.isoformat(),
        "persona_id": event.persona_id,
        "version": event.version,
        "data": event.data,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode()


def retry_delay_s(attempt: int, settings: Settings) -> float | None:
    """Seconds before try ``attempt + 1`` after ``attempt`` failed ones; None: give up."""
    if attempt >= settings.webhook_max_attempts:
        return None
    return float(min(settings.webhook_retry_base_s * 2 ** (attempt - 1), settings.webhook_retry_max_s))


def _post(client: httpx.Client) -> Poster:
    def post(url: str, headers: dict[str, str], body: bytes, timeout_s: float) -> PostResult:
        try:
            response = client.post(url, content=body, headers=headers, timeout=timeout_s)
        except httpx.HTTPError as exc:
            return PostResult(None, type(exc).__name__)
        error = None if response.is_success else f"HTTP {response.status_code}"
        return PostResult(response.status_code, error)

    return post


class Dispatcher:
    """Deliver webhooks from the outbox; ``run(stop)`` loops until ``stop`` is set."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        poster: Poster | None = None,
        resolve: Callable[..., list[tuple[object, ...]]] | None = None,
        holder: str | None = None,
    ) -> None:
        self.store = WebhookStore(db)
        self._db = db
        self._settings = settings
        # Redirects are not followed: a 3xx to an internal address would get round the URL check.
        self._client = httpx.Client(follow_redirects=False, trust_env=False)
        self._poster = poster or _post(self._client)
        self._resolve = resolve or socket.getaddrinfo
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._pool = ThreadPoolExecutor(_POSTERS, thread_name_prefix="webhook-post")
        self._held = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set; a failing round is logged and retried."""
        try:
            while not stop.is_set():
                try:
                    busy = self.run_once()
                except Exception:  # a store outage: log it, wait, go on
                    log.exception("webhook dispatch round failed")
                    busy = False
                if not busy:
                    stop.wait(self._settings.webhook_poll_s)
        finally:
            if self._held:
                try:
                    self.store.release_lease(LEASE_NAME, self.holder)
                except Exception:  # the lease expires by itself
                    log.warning("could not release the webhook lease")
            self.close()

    def run_once(self) -> bool:
        """One round: take the lease, fan new events out, send what is due. True when it
        did work (the caller goes again at once)."""
        if not self.store.any_enabled():
            return False
        self._held = self.store.take_lease(LEASE_NAME, self.holder, self._settings.webhook_lease_ttl_s)
        if not self._held:
            return False
        planned = sum(self._fan_out(sub) for sub in self.store.subscriptions(enabled_only=True))
        due = self.store.due(_DUE_PAGE)
        if due:
            subs = {s.id: s for s in self.store.subscriptions(enabled_only=True, with_secret=True)}
            list(self._pool.map(lambda d: self._deliver(d, subs.get(d.subscription_id)), due))
        return bool(planned or due)

    def _fan_out(self, sub: Subscription) -> int:
        page = read_feed(self._db, sub.cursor, _FAN_OUT_PAGE, sub.wants)
        if page.next_cursor == sub.cursor:
            return 0
        self.store.fan_out(sub, page.events, page.next_cursor)
        return len(page.events) or 1

    def _deliver(self, delivery: Delivery, sub: Subscription | None) -> None:
        if sub is None:  # disabled or removed since `due` read it
            return
        event = self.store.event(delivery.event_id)
        if event is None:
            self.store.abandon(delivery, "event erased before delivery")
            return
        body = event_body(event)
        started = time.monotonic()
        try:
            allow = self._settings.webhook_allow_private
            check_webhook_url(sub.url, allow_private=allow, resolve=self._resolve)
        except WebhookUrlRefusedError as exc:
            result = PostResult(None, f"refused: {exc}")
        else:
            msg_id = str(event.id)
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "user-agent": "persona-core-webhooks",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(sub.secret, msg_id, timestamp, body),
            }
            result = self._poster(sub.url, headers, body, self._settings.webhook_timeout_s)
        duration_ms = int((time.monotonic() - started) * 1000)
        attempt = delivery.attempts + 1
        retry = None if result.ok else retry_delay_s(attempt, self._settings)
        self.store.record_attempt(
            delivery, ok=result.ok, status_code=result.status_code, error=result.error,
            duration_ms=duration_ms, retry_in_s=retry, disable_after=self._settings.webhook_disable_after,
        )
        if not result.ok:
            # The subscription id and URL host only: the URL's path or query may hold a token.
            log.warning("webhook %s event %d try %d failed: %s", sub.id, event.id, attempt, result.error)


class DispatcherThread:
    """A :class:`Dispatcher` in a daemon thread of this process; ``stop()`` ends it."""

    def __init__(self, db: Database, settings: Settings, **kwargs: object) -> None:
        self.dispatcher = Dispatcher(db, settings, **kwargs)  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.dispatcher.run, args=(self._stop,), name="webhook-dispatcher", daemon=True
        )

    def start(self) -> DispatcherThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
