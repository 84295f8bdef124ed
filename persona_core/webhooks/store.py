"""Webhook subscriptions, their deliveries and the per-attempt log, in the metadata database.

A subscription's ``cursor`` is the last event id already turned into delivery rows; the fan-out
inserts the rows and moves the cursor in one transaction, so a dispatcher killed at any point
neither skips an event nor loses a delivery it had planned."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from persona_core.errors import InvalidInputError, NotFoundError
from persona_core.pack import check_persona_id
from persona_core.store import tables as t
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.events import Event
from persona_core.webhooks.signing import new_secret, secret_key

__all__ = [
    "EVENT_TYPES",
    "Attempt",
    "Delivery",
    "Subscription",
    "WebhookNotFoundError",
    "WebhookStore",
]

EVENT_TYPES = (
    "version.published",
    "version.blocked",
    "version.failed",
    "version.retracted",
    "alias.moved",
    "persona.erased",
    "version.erased",
)
_sub, _del, _att = t.webhook_subscriptions, t.webhook_deliveries, t.webhook_attempts
_lease = t.dispatcher_leases
_MAX_EVENT_ID = sa.select(sa.func.coalesce(sa.func.max(t.events.c.id), 0))


class WebhookNotFoundError(NotFoundError):
    code = "webhook_not_found"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscription. ``secret`` is for signing only: never shown after creation."""

    id: str
    url: str
    event_types: tuple[str, ...] | None
    persona_ids: tuple[str, ...] | None
    description: str
    created_at: datetime
    created_by: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    cursor: int
    secret: str = field(default="", repr=False)

    def wants(self, event: Event) -> bool:
        """Whether this subscription's filters let ``event`` through."""
        return (self.event_types is None or event.type in self.event_types) and (
            self.persona_ids is None or event.persona_id in self.persona_ids
        )

    def public(self) -> dict[str, Any]:
        """Its fields without the secret, as JSON."""
        return {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types) if self.event_types is not None else None,
            "persona_ids": list(self.persona_ids) if self.persona_ids is not None else None,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "enabled": self.enabled,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "disabled_reason": self.disabled_reason,
            "consecutive_failures": self.consecutive_failures,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    subscription_id: str
    event_id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the delivery log."""

    subscription_id: str
    event_id: int
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- subscriptions -------------------------------------------------------------
    def create(
        self,
        url: str,
        *,
        created_by: str,
        secret: str | None = None,
        event_types: list[str] | None = None,
        persona_ids: list[str] | None = None,
        description: str = "",
        from_now: bool = True,
    ) -> Subscription:
        """A new enabled subscription; its ``secret`` (generated unless given) is in the return
        value only. It receives events after the newest one now (``from_now``) or all stored."""
        secret = secret or new_secret()
        secret_key(secret)
        if event_types is not None:
            unknown = sorted(set(event_types) - set(EVENT_TYPES))
            if unknown or not event_types:
                raise InvalidInputError(f"event types must be a non-empty subset of {list(EVENT_TYPES)}")
        if persona_ids is not None:
            if not persona_ids:
                raise InvalidInputError("persona_ids, when given, must name at least one persona")
            for persona_id in persona_ids:
                check_persona_id(persona_id)
        sub_id = "wh_" + secrets.token_hex(8)
        now = utc_now()
        with self._db.tx(write=True) as conn:
            cursor = 0
            if from_now:
                cursor = int(conn.execute(_MAX_EVENT_ID).scalar_one())
            conn.execute(
                sa.insert(_sub).values(
                    id=sub_id, url=url, secret=secret,
                    event_types=sorted(set(event_types)) if event_types is not None else None,
                    persona_ids=sorted(set(persona_ids)) if persona_ids is not None else None,
                    description=description, created_at=now, created_by=created_by, enabled=True,
                    disabled_at=None, disabled_reason=None, consecutive_failures=0, cursor=cursor,
                )
            )
        return self.get(sub_id, with_secret=True)

    def get(self, sub_id: str, *, with_secret: bool = False) -> Subscription:
        with self._db.tx(write=False) as conn:
            row = conn.execute(sa.select(_sub).where(_sub.c.id == sub_id)).first()
        if row is None:
            raise WebhookNotFoundError(f"no webhook subscription {sub_id!r}")
        return _subscription(row, with_secret)

    def subscriptions(self, *, enabled_only: bool = False, with_secret: bool = False) -> list[Subscription]:
        query = sa.select(_sub).order_by(_sub.c.created_at, _sub.c.id)
        if enabled_only:
            query = query.where(_sub.c.enabled.is_(True))
        with self._db.tx(write=False) as conn:
            return [_subscription(row, with_secret) for row in conn.execute(query)]

    def any_enabled(self) -> bool:
        with self._db.tx(write=False) as conn:
            found = conn.execute(sa.select(_sub.c.id).where(_sub.c.enabled.is_(True)).limit(1)).first()
        return found is not None

    def delete(self, sub_id: str) -> None:
        """Remove a subscription with its deliveries and delivery log."""
        with self._db.tx(write=True) as conn:
            if conn.execute(sa.delete(_sub).where(_sub.c.id == sub_id)).rowcount == 0:
                raise WebhookNotFoundError(f"no webhook subscription {sub_id!r}")
            conn.execute(sa.delete(_del).where(_del.c.subscription_id == sub_id))
            conn.execute(sa.delete(_att).where(_att.c.subscription_id == sub_id))

    def enable(self, sub_id: str) -> Subscription:
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.update(_sub).where(_sub.c.id == sub_id).values(
                    enabled=True, disabled_at=None, disabled_reason=None, consecutive_failures=0
                )
            )
        return self.get(sub_id)

    def attempts(self, sub_id: str, limit: int = 100) -> list[Attempt]:
        """The newest ``limit`` tries of a subscription's deliveries, oldest first."""
        query = (
            sa.select(_att).where(_att.c.subscription_id == sub_id).order_by(_att.c.id.desc()).limit(limit)
        )
        with self._db.tx(write=False) as conn:
            rows = list(conn.execute(query))
        return [
            Attempt(r.subscription_id, r.event_id, r.attempt, aware(r.at) or r.at, r.status_code, r.error,
                    r.duration_ms)
            for r in reversed(rows)
        ]

    # -- the dispatcher's side ------------------------------------------------------
    def fan_out(self, sub: Subscription, events: list[Event], next_cursor: int) -> bool:
        """Plan one delivery per event and move the cursor, in one transaction; False when the
        cursor had moved meanwhile (another dispatcher did it: nothing is written)."""
        now = utc_now()
        with self._db.tx(write=True) as conn:
            moved = conn.execute(
                sa.update(_sub)
                .where(_sub.c.id == sub.id, _sub.c.cursor == sub.cursor)
                .values(cursor=next_cursor)
            ).rowcount
            if moved == 0:
                return False
            if events:
                conn.execute(
                    sa.insert(_del),
                    [
                        {"subscription_id": sub.id, "event_id": e.id, "state": "pending", "attempts": 0,
                         "next_attempt_at": now, "created_at": now, "delivered_at": None}
                        for e in events
                    ],
                )
        return True

    def due(self, limit: int = 50) -> list[Delivery]:
        """Pending deliveries of enabled subscriptions whose next try is due, oldest first."""
        query = (
            sa.select(_del.c.id, _del.c.subscription_id, _del.c.event_id, _del.c.attempts)
            .join(_sub, _sub.c.id == _del.c.subscription_id)
            .where(_del.c.state == "pending", _del.c.next_attempt_at <= utc_now(), _sub.c.enabled.is_(True))
            .order_by(_del.c.next_attempt_at, _del.c.id)
            .limit(limit)
        )
        with self._db.tx(write=False) as conn:
            return [Delivery(r.id, r.subscription_id, r.event_id, r.attempts) for r in conn.execute(query)]

    def event(self, event_id: int) -> Event | None:
        with self._db.tx(write=False) as conn:
            row = conn.execute(sa.select(t.events).where(t.events.c.id == event_id)).first()
        if row is None:
            return None
        return Event(row.id, aware(row.at) or row.at, row.type, row.persona_id, row.version, dict(row.data))

    def record_attempt(
        self,
        delivery: Delivery,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry_in_s: float | None,
        disable_after: int,
    ) -> None:
        """Log one try and settle the delivery: delivered, retried in ``retry_in_s``, or
        abandoned (``retry_in_s`` None); a run of ``disable_after`` failed tries disables the
        subscription."""
        now = utc_now()
        attempt = delivery.attempts + 1
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.insert(_att).values(
                    delivery_id=delivery.id, subscription_id=delivery.subscription_id,
                    event_id=delivery.event_id, attempt=attempt, at=now, status_code=status_code,
                    error=(error or None) and error[:500], duration_ms=duration_ms,
                )
            )
            where = _sub.c.id == delivery.subscription_id
            if ok:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": now, "next_attempt_at": None}
                conn.execute(sa.update(_sub).where(where).values(consecutive_failures=0))
            elif retry_in_s is None:
                values = {"state": "abandoned", "next_attempt_at": None}
            else:
                values = {"next_attempt_at": now + timedelta(seconds=retry_in_s)}
            conn.execute(
                sa.update(_del).where(_del.c.id == delivery.id, _del.c.state == "pending").values(
                    attempts=attempt, **values
                )
            )
            if not ok:
                conn.execute(sa.update(_sub).where(where).values(
                    consecutive_failures=_sub.c.consecutive_failures + 1))
                conn.execute(
                    sa.update(_sub)
                    .where(where, _sub.c.enabled.is_(True), _sub.c.consecutive_failures >= disable_after)
                    .values(enabled=False, disabled_at=now,
                            disabled_reason=f"{disable_after} failed deliveries in a row")
                )

    def abandon(self, delivery: Delivery, reason: str) -> None:
        """Give a delivery up without a try (its event was erased)."""
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.update(_del).where(_del.c.id == delivery.id, _del.c.state == "pending").values(
                    state="abandoned", next_attempt_at=None
                )
            )
            conn.execute(
                sa.insert(_att).values(
                    delivery_id=delivery.id, subscription_id=delivery.subscription_id,
                    event_id=delivery.event_id, attempt=delivery.attempts, at=utc_now(),
                    status_code=None, error=reason, duration_ms=0,
                )
            )

    def take_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Hold (or renew) the dispatcher lease ``name`` for ``ttl_s``; False while another
        holder's lease has not expired."""
        now = utc_now()
        until = now + timedelta(seconds=ttl_s)
        with self._db.tx(write=True) as conn:
            taken = conn.execute(
                sa.update(_lease)
                .where(_lease.c.name == name, sa.or_(_lease.c.holder == holder, _lease.c.expires_at < now))
                .values(holder=holder, expires_at=until)
            ).rowcount
            if taken:
                return True
            if conn.execute(sa.select(_lease.c.name).where(_lease.c.name == name)).first() is not None:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_lease).values(name=name, holder=holder, expires_at=until))
            except sa.exc.IntegrityError:
                return False  # another process inserted it first
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self._db.tx(write=True) as conn:
            conn.execute(sa.delete(_lease).where(_lease.c.name == name, _lease.c.holder == holder))


def _subscription(row: Any, with_secret: bool) -> Subscription:
    return Subscription(
        id=row.id,
        url=row.url,
        event_types=tuple(row.event_types) if row.event_types is not None else None,
        persona_ids=tuple(row.persona_ids) if row.persona_ids is not None else None,
        description=row.description,
        created_at=aware(row.created_at) or row.created_at,
        created_by=row.created_by,
        enabled=bool(row.enabled),
        disabled_at=aware(row.disabled_at),
        disabled_reason=row.disabled_reason,
        consecutive_failures=row.consecutive_failures,
        cursor=row.cursor,
        secret=row.secret if with_secret else "",
    )
