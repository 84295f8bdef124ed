"""Webhook subscriptions (scope ``admin``): create, list, read, enable, delete, delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from registry_api.deps import PrincipalDep
from registry_api.event_schemas import (
    AttemptList,
    AttemptOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
)
from registry_api.events import EventsService
from registry_api.routes.common import PROBLEMS

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _events(request: Request) -> EventsService:
    events: EventsService = request.app.state.service.events
    return events


@router.post("", status_code=201, responses=PROBLEMS(400, 401, 403, 422))
def create_webhook(request: Request, who: PrincipalDep, body: WebhookCreate) -> WebhookCreated:
    """Subscribe a URL to events. The answer holds the signing ``secret``: the only time it is
    shown. A URL that names or resolves to a loopback, private or link-local address is 400
    ``webhook_url_refused``. The subscription gets events from now on."""
    sub = _events(request).create_webhook(
        who, body.url, secret=body.secret, event_types=body.event_types, persona_ids=body.persona_ids,
        description=body.description,
    )
    return WebhookCreated(**WebhookOut.of(sub).model_dump(), secret=sub.secret)


@router.get("", responses=PROBLEMS(401, 403))
def list_webhooks(request: Request, who: PrincipalDep) -> WebhookList:
    """Every subscription this key manages (no secrets)."""
    return WebhookList(items=[WebhookOut.of(s) for s in _events(request).list_webhooks(who)])


@router.get("/{webhook_id}", responses=PROBLEMS(401, 403, 404))
def get_webhook(request: Request, who: PrincipalDep, webhook_id: str) -> WebhookOut:
    return WebhookOut.of(_events(request).get_webhook(who, webhook_id))


@router.post("/{webhook_id}/enable", responses=PROBLEMS(401, 403, 404))
def enable_webhook(request: Request, who: PrincipalDep, webhook_id: str) -> WebhookOut:
    """Enable a subscription again (after it was disabled for failing); its run of failures
    starts from zero and its pending deliveries are tried."""
    return WebhookOut.of(_events(request).enable_webhook(who, webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=PROBLEMS(401, 403, 404))
async def delete_webhook(request: Request, who: PrincipalDep, webhook_id: str) -> Response:
    """Remove a subscription with its pending deliveries and its delivery log."""
    await run_in_threadpool(_events(request).delete_webhook, who, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/attempts", responses=PROBLEMS(401, 403, 404))
def webhook_attempts(
    request: Request, who: PrincipalDep, webhook_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> AttemptList:
    """The delivery log: the newest ``limit`` tries, oldest first (status code or error, time)."""
    items = _events(request).webhook_attempts(who, webhook_id, limit)
    return AttemptList(items=[AttemptOut.of(a) for a in items])
