"""Webhooks: subscriptions, one delivery per (subscription, event), a log row per attempt, and
the dispatcher's lease.

* ``webhook_subscriptions``: URL, secret (the HMAC key; never shown after creation), the event
  types and personas it wants (null: all), whether it is enabled, its run of consecutive
  failures, and ``cursor``: the last event id already fanned out into deliveries.
* ``webhook_deliveries``: one per (subscription, event), pending until a 2xx answer, with its
  attempt count and the time of the next try (exponential back-off).
* ``webhook_attempts``: the delivery log, one row per HTTP try.
* ``dispatcher_leases``: one row per named dispatcher; the holder and until when, so only one
  process dispatches at a time and another takes over when it dies.

Revision ID: 0005_webhooks
Revises: 0004_registry_ops
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_webhooks"
down_revision = "0004_registry_ops"
branch_labels = None
depends_on = None

_Json = sa.JSON().with_variant(JSONB(), "postgresql")
_Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("event_types", _Json, nullable=True),
        sa.Column("persona_ids", _Json, nullable=True),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_at", _Ts, nullable=True),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("cursor", sa.Integer, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", _Ts, nullable=True),
        sa.Column("created_at", _Ts, nullable=False),
        sa.Column("delivered_at", _Ts, nullable=True),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'abandoned')", name="ck_webhook_delivery_state"
        ),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.Integer, nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", _Ts, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_webhook_attempts_subscription", "webhook_attempts", ["subscription_id", "id"])
    op.create_table(
        "dispatcher_leases",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", _Ts, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dispatcher_leases")
    op.drop_index("ix_webhook_attempts_subscription", "webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
