"""The registry's events: the cursor feed (HTTP long-poll, gRPC stream) and webhook
subscriptions, for both transports.

Read keys see the feed; a key restricted to some personas sees only their events (its cursor
still moves past the others). Webhook subscriptions are admin's; a restricted admin key
manages only subscriptions filtered to its own personas. A subscription's secret is returned
by the create call and never again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from functools import cached_property

from starlette.concurrency import run_in_threadpool

from persona_core.errors import InvalidInputError
from persona_core.settings import Settings
from persona_core.store.base import MetadataStore
from persona_core.store.engine import Database
from persona_core.store.event_feed import FeedPage, read_feed
from persona_core.store.events import Event
from persona_core.webhooks import Attempt, Subscription, WebhookNotFoundError, WebhookStore, check_webhook_url
from registry_api.auth import Principal
from registry_api.errors import PersonaForbiddenError

__all__ = ["FEED_POLL_S", "MAX_WAIT_S", "EventsService"]

# A waiting request looks at the outbox this often: one indexed read, so a change wakes it
# within about this long.
FEED_POLL_S = 0.1
MAX_WAIT_S = 60.0
MAX_PAGE = 500


class EventsService:
    def __init__(self, settings: Settings, metadata: MetadataStore) -> None:
        self._settings = settings
        self._metadata = metadata

    @cached_property
    def _db(self) -> Database:
        database = getattr(self._metadata, "database", None)
        if not isinstance(database, Database):
            raise TypeError(f"events live in a SQL metadata store, not {type(self._metadata).__name__}")
        return database

    @cached_property
    def webhooks(self) -> WebhookStore:
        return WebhookStore(self._db)

    # -- the feed ----------------------------------------------------------------------
    def page(self, who: Principal, after: int, limit: int = 100) -> FeedPage:
        """Events after ``after`` this key may see, and the next cursor; no waiting."""
        who.require("read")
        if after < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"after must be >= 0 and limit 1 to {MAX_PAGE}")
        return read_feed(self._db, after, limit, _visible_to(who))

    async def wait(self, who: Principal, after: int, timeout_s: float, limit: int = 100) -> FeedPage:
        """The first non-empty page after ``after``, or an empty one after ``timeout_s``."""
        if not 0 <= timeout_s <= MAX_WAIT_S:
            raise InvalidInputError(f"timeout must be 0 to {MAX_WAIT_S:g} seconds")
        deadline = time.monotonic() + timeout_s
        while True:
            page = await run_in_threadpool(self.page, who, after, limit)
            left = deadline - time.monotonic()
            if page.events or left <= 0:
                return page
            after = page.next_cursor
            await asyncio.sleep(min(FEED_POLL_S, left))

    def watch(self, who: Principal, after: int, active: Callable[[], bool]) -> Iterator[Event]:
        """Every visible event after ``after``, as it appears, while ``active()`` (a stream)."""
        who.require("read")
        stop = threading.Event()
        while active():
            page = self.page(who, after)
            yield from page.events
            after = page.next_cursor
            if not page.events:
                stop.wait(FEED_POLL_S)

    # -- webhooks ----------------------------------------------------------------------
    def create_webhook(
        self,
        who: Principal,
        url: str,
        *,
        secret: str | None,
        event_types: list[str] | None,
        persona_ids: list[str] | None,
        description: str,
    ) -> Subscription:
        """A new subscription, its secret included (the only time it is shown)."""
        self._require_admin(who, persona_ids)
        check_webhook_url(url, allow_private=self._settings.webhook_allow_private)
        return self.webhooks.create(
            url, created_by=who.name, secret=secret, event_types=event_types, persona_ids=persona_ids,
            description=description,
        )

    def list_webhooks(self, who: Principal) -> list[Subscription]:
        who.require("admin")
        return [s for s in self.webhooks.subscriptions() if _manages(who, s)]

    def get_webhook(self, who: Principal, sub_id: str) -> Subscription:
        who.require("admin")
        sub = self.webhooks.get(sub_id)
        if not _manages(who, sub):
            raise WebhookNotFoundError(f"no webhook subscription {sub_id!r}")
        return sub

    def delete_webhook(self, who: Principal, sub_id: str) -> None:
        self.get_webhook(who, sub_id)
        self.webhooks.delete(sub_id)

    def enable_webhook(self, who: Principal, sub_id: str) -> Subscription:
        self.get_webhook(who, sub_id)
        return self.webhooks.enable(sub_id)

    def webhook_attempts(self, who: Principal, sub_id: str, limit: int) -> list[Attempt]:
        self.get_webhook(who, sub_id)
        return self.webhooks.attempts(sub_id, limit)

    @staticmethod
    def _require_admin(who: Principal, persona_ids: list[str] | None) -> None:
        who.require("admin")
        if who.persona_ids is None:
            return
        if persona_ids is None:
            raise PersonaForbiddenError(
                "this API key is restricted to some personas: list them in persona_ids"
            )
        for persona_id in persona_ids:
            who.require("admin", persona_id)


def _visible_to(who: Principal) -> Callable[[Event], bool] | None:
    if who.persona_ids is None:
        return None
    return lambda event: who.may_see(event.persona_id)


def _manages(who: Principal, sub: Subscription) -> bool:
    if who.persona_ids is None:
        return True
    return sub.persona_ids is not None and set(sub.persona_ids) <= who.persona_ids
