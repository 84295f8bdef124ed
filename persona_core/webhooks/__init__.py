"""Webhooks: subscriptions, SSRF-checked URLs, Standard Webhooks signatures and the dispatcher
that delivers the event outbox at least once (docs/webhooks.md)."""

from persona_core.webhooks.dispatcher import (
    Dispatcher,
    DispatcherThread,
    PostResult,
    event_body,
    retry_delay_s,
)
from persona_core.webhooks.signing import new_secret, sign
from persona_core.webhooks.store import EVENT_TYPES, Attempt, Subscription, WebhookNotFoundError, WebhookStore
from persona_core.webhooks.urls import WebhookUrlRefusedError, check_webhook_url

__all__ = [
    "EVENT_TYPES",
    "Attempt",
    "Dispatcher",
    "DispatcherThread",
    "PostResult",
    "Subscription",
    "WebhookNotFoundError",
    "WebhookStore",
    "WebhookUrlRefusedError",
    "check_webhook_url",
    "event_body",
    "new_secret",
    "retry_delay_s",
    "sign",
]
