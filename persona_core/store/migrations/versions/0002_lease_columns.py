"""Build leases as columns: who builds a `building` version (host, pid, Dagster run) and when
it last beat, instead of a "build lease: run R pid P on H" line in its reasons. Rows that
hold such a line are carried over (the line leaves the reasons; updated_at becomes the
heartbeat).

Revision ID: 0002_lease_columns
Revises: 0001_initial
Create Date: 2026-12-07
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0002_lease_columns"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_COLUMNS = ("lease_host", "lease_pid", "lease_run_id", "heartbeat_at")
# The old free-text form; read once here, to carry rows over, and nowhere else.
_OLD_LEASE = re.compile(r"build lease: run (?P<run>\S+) pid (?P<pid>\d+) on (?P<host>\S+)")
_LEASE_LINE = "build lease: run {run} pid {pid} on {host}"


def _versions() -> sa.TableClause:
    return sa.table(
        "persona_versions",
        sa.column("id", sa.Integer), sa.column("status", sa.String), sa.column("reasons", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("lease_host", sa.String), sa.column("lease_pid", sa.Integer),
        sa.column("lease_run_id", sa.String), sa.column("heartbeat_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    op.add_column("persona_versions", sa.Column("lease_host", sa.String(255), nullable=True))
    op.add_column("persona_versions", sa.Column("lease_pid", sa.Integer, nullable=True))
    op.add_column("persona_versions", sa.Column("lease_run_id", sa.String(64), nullable=True))
    op.add_column("persona_versions", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    v = _versions()
    conn = op.get_bind()
    for row in conn.execute(sa.select(v.c.id, v.c.reasons, v.c.updated_at).where(v.c.status == "building")):
        reasons = list(row.reasons or [])
        match = next((m for m in map(_OLD_LEASE.fullmatch, reasons) if m), None)
        if match is None:
            continue
        conn.execute(sa.update(v).where(v.c.id == row.id).values(
            lease_host=match["host"], lease_pid=int(match["pid"]),
            lease_run_id="" if match["run"] == "-" else match["run"], heartbeat_at=row.updated_at,
            reasons=[r for r in reasons if r != match.group(0)]))


def downgrade() -> None:
    v = _versions()
    conn = op.get_bind()
    rows = conn.execute(sa.select(v.c.id, v.c.reasons, v.c.lease_host, v.c.lease_pid, v.c.lease_run_id)
                        .where(v.c.status == "building", v.c.lease_host.is_not(None)))
    for row in rows:
        line = _LEASE_LINE.format(run=row.lease_run_id or "-", pid=row.lease_pid, host=row.lease_host)
        conn.execute(sa.update(v).where(v.c.id == row.id).values(reasons=[line, *(row.reasons or [])]))
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy would drop the triggers.
    for name in reversed(_COLUMNS):
        op.drop_column("persona_versions", name)
