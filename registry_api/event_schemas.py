"""Bodies of the event feed and webhook routes (pydantic at the edge)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from persona_core.pack import PersonaId
from persona_core.store.events import Event
from persona_core.webhooks import Attempt, Subscription

__all__ = ["AttemptList", "AttemptOut", "EventOut", "EventPage", "WebhookCreate", "WebhookCreated",
           "WebhookList", "WebhookOut"]


class EventOut(BaseModel):
    id: int = Field(description="The event id: increasing, the feed's cursor and the webhook-id header.")
    type: str = Field(description="version.published | version.blocked | version.failed | "
                      "version.retracted | alias.moved | persona.erased | version.erased")
    at: datetime
    persona_id: str
    version: int | None
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(id=event.id, type=event.type, at=event.at, persona_id=event.persona_id,
                   version=event.version, data=event.data)


class EventPage(BaseModel):
    events: list[EventOut]
    next_cursor: int = Field(description="Pass it as `after` next time (it moves even when no event "
                             "here was for you).")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="http(s) URL; non-public addresses are refused "
                     "(webhook_url_refused) unless PERSONA_WEBHOOK_ALLOW_PRIVATE.")
    secret: str | None = Field(default=None, description="whsec_ + base64 of 24 to 64 bytes; "
                               "generated when left out.")
    event_types: list[str] | None = Field(default=None, description="Types to send; null: all.")
    persona_ids: list[PersonaId] | None = Field(default=None, description="Personas; null: all.")
    description: str = Field(default="", max_length=500)


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str] | None
    persona_ids: list[str] | None
    description: str
    created_at: datetime
    created_by: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int

    @classmethod
    def of(cls, sub: Subscription) -> WebhookOut:
        return cls.model_validate(sub.public())


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret: shown in this answer only.")


class WebhookList(BaseModel):
    items: list[WebhookOut]


class AttemptOut(BaseModel):
    event_id: int
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(event_id=attempt.event_id, attempt=attempt.attempt, at=attempt.at,
                   status_code=attempt.status_code, error=attempt.error, duration_ms=attempt.duration_ms)


class AttemptList(BaseModel):
    items: list[AttemptOut]
