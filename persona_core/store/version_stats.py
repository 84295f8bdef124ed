"""What the version records say about builds, for metrics: versions per status, and how long
each finished build took from its upload to its outcome.

On SQL stores each is one aggregate query (the rows never leave the database); other stores
are walked persona by persona. Durations run from the version's creation (the upload, so
queue time is included) to its outcome: ``published_at`` for versions that published
(retracted ones included: they did publish), ``updated_at`` for ``blocked`` and ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from persona_core.errors import StoreUnavailableError
from persona_core.store import tables as t
from persona_core.store.base import MetadataStore, VersionRecord, VersionStatus

# Build outcomes a duration is kept for; a published-then-retracted version is "published".
OUTCOMES = ("published", "blocked", "failed")
_PAGE = 200


@dataclass
class DurationBuckets:
    """A cumulative histogram of build durations for one outcome."""

    bounds: Sequence[float]
    cumulative: list[int] = field(default_factory=list)  # one per bound, then +Inf (= count)
    total_s: float = 0.0
    count: int = 0


def count_versions_by_status(store: MetadataStore) -> dict[str, int]:
    """Versions per status: one ``GROUP BY`` on SQL stores, a walk otherwise."""
    engine = _engine(store)
    if engine is not None:
        v = t.persona_versions
        rows = _run(engine, sa.select(v.c.status, sa.func.count()).group_by(v.c.status))
        return {str(status): int(n) for status, n in rows}
    counts: dict[str, int] = {}
    for record in _walk(store):
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    return counts


def build_durations(store: MetadataStore, bounds: Sequence[float]) -> dict[str, DurationBuckets]:
    """Per outcome (every one of :data:`OUTCOMES`, empty ones included), the finished builds'
    seconds from upload to outcome, bucketed at ``bounds`` (ascending)."""
    engine = _engine(store)
    out = {o: DurationBuckets(bounds, [0] * (len(bounds) + 1)) for o in OUTCOMES}
    if engine is not None:
        for outcome, count, total, *cumulative in _run(engine, _durations_query(engine, bounds)):
            bucket = out[str(outcome)]
            bucket.count, bucket.total_s = int(count), float(total or 0.0)
            bucket.cumulative = [int(n or 0) for n in cumulative] + [int(count)]
        return out
    for record in _walk(store):
        outcome, seconds = _outcome(record)
        if outcome is None:
            continue
        bucket = out[outcome]
        bucket.count += 1
        bucket.total_s += seconds
        for i, bound in enumerate(bounds):
            if seconds <= bound:
                bucket.cumulative[i] += 1
        bucket.cumulative[-1] += 1
    return out


def _durations_query(engine: sa.Engine, bounds: Sequence[float]) -> sa.Select[Any]:
    v = t.persona_versions
    finished = sa.func.coalesce(v.c.published_at, v.c.updated_at)
    if engine.dialect.name == "postgresql":
        seconds: Any = sa.func.extract("epoch", finished - v.c.created_at)
    else:  # SQLite keeps timestamps as text; julianday reads them
        seconds = (sa.func.julianday(finished) - sa.func.julianday(v.c.created_at)) * 86400.0
    outcome = sa.case((v.c.published_at.is_not(None), "published"), else_=v.c.status)
    columns = [
        sa.func.count(),
        sa.func.sum(seconds),
        *(sa.func.sum(sa.case((seconds <= bound, 1), else_=0)) for bound in bounds),
    ]
    where = sa.or_(v.c.published_at.is_not(None), v.c.status.in_(("blocked", "failed")))
    return sa.select(outcome, *columns).where(where).group_by(outcome)


def _outcome(record: VersionRecord) -> tuple[str | None, float]:
    if record.published_at is not None:
        return "published", (record.published_at - record.created_at).total_seconds()
    if record.status in (VersionStatus.BLOCKED, VersionStatus.FAILED):
        return record.status.value, (record.updated_at - record.created_at).total_seconds()
    return None, 0.0


def _engine(store: MetadataStore) -> sa.Engine | None:
    engine = getattr(store, "engine", None)
    return engine if isinstance(engine, sa.Engine) else None


def _run(engine: sa.Engine, query: sa.Select[Any]) -> list[Any]:
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    except sa.exc.SQLAlchemyError as exc:
        raise StoreUnavailableError(f"database unavailable: {exc}") from None


def _walk(store: MetadataStore) -> Iterator[VersionRecord]:
    after: str | None = None
    while True:
        page = store.list_personas(limit=_PAGE, after=after)
        for persona in page:
            yield from store.list_versions(persona.persona_id)
        if len(page) < _PAGE:
            return
        after = page[-1].persona_id
