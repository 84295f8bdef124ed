"""SQLAlchemy Core tables of the metadata store. Alembic migrations (``migrations/``) own
the schema in the database; these definitions are what the queries use, and
``tests/integration/test_migrations.py`` checks the two agree."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
STATUSES = ("pending", "building", "blocked", "failed", "published", "erasing", "erased", "retracted")

metadata = sa.MetaData()
# Alembic's record of this schema's revision. Not `alembic_version`: a deployment may keep
# Dagster's storage (which has its own `alembic_version`) in the same database.
VERSION_TABLE = "persona_alembic_version"

personas = sa.Table(
    "personas",
    metadata,
    sa.Column("persona_id", sa.String(63), primary_key=True),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("erased_at", Timestamp, nullable=True),  # a tombstone: the id is retired
)

persona_versions = sa.Table(
    "persona_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "persona_id",
        sa.String(63),
        sa.ForeignKey("personas.persona_id", ondelete="RESTRICT", name="fk_persona_versions_persona"),
        nullable=False,
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reasons", Json, nullable=False),
    sa.Column("inputs", Json, nullable=False),
    sa.Column("checks", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("published_at", Timestamp, nullable=True),
    # The build lease of a `building` version (persona_core.store.version_states).
    sa.Column("lease_host", sa.String(255), nullable=True),
    sa.Column("lease_pid", sa.Integer, nullable=True),
    sa.Column("lease_run_id", sa.String(64), nullable=True),
    sa.Column("heartbeat_at", Timestamp, nullable=True),
    # A retracted version (published, then withdrawn): when and why.
    sa.Column("retracted_at", Timestamp, nullable=True),
    sa.Column("retraction_reason", sa.String(1000), nullable=True),
    sa.UniqueConstraint("persona_id", "version", name="uq_persona_versions_persona_version"),
    sa.CheckConstraint("version >= 1", name="ck_persona_versions_version_positive"),
    sa.CheckConstraint(f"status IN {STATUSES!r}", name="ck_persona_versions_status"),
)

published_packs = sa.Table(
    "published_packs",
    metadata,
    sa.Column("persona_id", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("pack_ref", sa.String(80), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("blob_refs", Json, nullable=False),
    sa.Column("published_at", Timestamp, nullable=False),
    sa.ForeignKeyConstraint(
        ["persona_id", "version"],
        ["persona_versions.persona_id", "persona_versions.version"],
        name="fk_published_packs_version",
        ondelete="RESTRICT",
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("scopes", Json, nullable=False),
    sa.Column("persona_ids", Json, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp, nullable=True),
)

# One row per erasure job (a persona, or one version): who, why, when; no biometric content.
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("persona_id", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),  # None: the whole persona
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("versions", Json, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=True),
    sa.CheckConstraint("state IN ('erasing', 'erased')", name="ck_erasures_state"),
    sa.Index("ix_erasures_persona", "persona_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("persona_id", sa.String(63), nullable=True),
    sa.Column("detail", Json, nullable=False),
)

# Which blobs ("blob": a sha256 ref) and named objects ("object": a key) each version holds:
# what an erasure deletes unless another version still holds it, and what GC keeps.
version_refs = sa.Table(
    "version_refs",
    metadata,
    sa.Column("persona_id", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("ref", sa.String(300), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.CheckConstraint("kind IN ('blob', 'object')", name="ck_version_refs_kind"),
    sa.Index("ix_version_refs_ref", "kind", "ref"),
)

# A blob or object whose deletion is under way (between the check that nothing holds it and
# the delete in the store): an upload that records a reference to it meanwhile writes it again.
gc_deleting = sa.Table(
    "gc_deleting",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("ref", sa.String(300), primary_key=True),
    sa.Column("started_at", Timestamp, nullable=False),
)

# Named pointers per persona (``live``, ``staging``): the version a renderer fleet pins.
aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("persona_id", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
)

alias_history = sa.Table(
    "alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("persona_id", sa.String(63), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),  # None: the alias was deleted
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Index("ix_alias_history_alias", "persona_id", "name", "id"),
)

# The outbox: one row per state change, written in the transaction that makes it; the id is
# the event feed's cursor and the webhooks' idempotency key.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("persona_id", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("data", Json, nullable=False),
    sa.Index("ix_events_persona", "persona_id"),
)

# Webhooks (persona_core.webhooks): subscriptions with their fan-out cursor (the last event id
# already turned into deliveries), one delivery per (subscription, event), a log row per try.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("event_types", Json, nullable=True),  # None: every type
    sa.Column("persona_ids", Json, nullable=True),  # None: every persona
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_at", Timestamp, nullable=True),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("cursor", sa.Integer, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | delivered | abandoned
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Timestamp, nullable=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp, nullable=True),
    sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
    sa.CheckConstraint("state IN ('pending', 'delivered', 'abandoned')", name="ck_webhook_delivery_state"),
    sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.Integer, nullable=False),
    sa.Column("subscription_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_webhook_attempts_subscription", "subscription_id", "id"),
)

# Who dispatches webhooks now: one row per dispatcher name, renewed while its holder lives.
dispatcher_leases = sa.Table(
    "dispatcher_leases",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
)
