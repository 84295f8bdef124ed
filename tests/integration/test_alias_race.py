"""Aliases under real concurrency, on SQLite and a real PostgreSQL: 20 threads move the same
alias at once from the version they all read; exactly one wins, every other is told
(AliasConflictError), and the alias, its history and its events agree. The same for 20
creators of a new alias, and for a retraction racing a move onto the same version."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import sqlalchemy as sa

from persona_core.errors import AliasConflictError, AliasInUseError, InvalidTransitionError
from persona_core.store import tables as t
from persona_core.store.aliases import UNSET
from persona_core.store.base import PublishedPack
from persona_core.store.metadata import SqlMetadataStore

WAYS = 20


def _published(meta: SqlMetadataStore, persona_id: str, count: int) -> None:
    meta.create_persona(persona_id, {})
    for n in range(1, count + 1):
        meta.create_version(persona_id, {"files": []})
        digest = hashlib.sha256(f"{persona_id}{n}".encode()).hexdigest()
        meta.publish(PublishedPack(persona_id, n, f"sha256:{digest}", digest, []), checks=[])


def _all_at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run every call on its own thread, released together; each result or raised error."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def _events(meta: SqlMetadataStore, persona_id: str) -> int:
    with meta._db.tx(write=False) as conn:
        query = (
            sa.select(sa.func.count())
            .select_from(t.events)
            .where(t.events.c.persona_id == persona_id, t.events.c.type == "alias.moved")
        )
        return int(conn.execute(query).scalar_one())


def test_twenty_way_move_race_leaves_one_winner_and_a_consistent_history(
    metadata_store: SqlMetadataStore,
) -> None:
    meta = metadata_store
    _published(meta, "alice", WAYS + 1)
    aliases = meta.aliases
    aliases.move("alice", "live", 1, expected=UNSET, actor="t", reason="start")
    results = _all_at_once(
        [
            (lambda n=n: aliases.move("alice", "live", n, expected=1, actor=f"t{n}", reason=f"to {n}"))
            for n in range(2, WAYS + 2)
        ]
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(e, AliasConflictError) for e in losers), losers
    won = winners[0]
    assert aliases.get("alice", "live").version == won.to_version  # type: ignore[attr-defined]
    moves = aliases.history("alice", "live")
    assert [(m.from_version, m.to_version, m.actor) for m in moves] == [
        (1, won.to_version, won.actor),
        (None, 1, "t"),
    ]  # type: ignore[attr-defined]
    assert _events(meta, "alice") == 2


def test_twenty_way_create_race(metadata_store: SqlMetadataStore) -> None:
    meta = metadata_store
    _published(meta, "alice", WAYS)
    results = _all_at_once(
        [
            (
                lambda n=n: meta.aliases.move(
                    "alice", "staging", n, expected=UNSET, actor=f"t{n}", reason="new"
                )
            )
            for n in range(1, WAYS + 1)
        ]
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, AliasConflictError) for r in results if r not in winners), results
    assert len(meta.aliases.history("alice", "staging")) == 1
    assert meta.aliases.get("alice", "staging").version == winners[0].to_version  # type: ignore[attr-defined]


def test_retraction_racing_a_move_onto_the_same_version(metadata_store: SqlMetadataStore) -> None:
    """Never both: either the alias points at the version, or the version is retracted."""
    meta = metadata_store
    _published(meta, "alice", 3)
    meta.aliases.move("alice", "live", 1, expected=UNSET, actor="t", reason="start")
    results = _all_at_once(
        [
            lambda: meta.aliases.move("alice", "live", 3, expected=1, actor="t", reason="up"),
            lambda: meta.retract("alice", 3, reason="bad"),
        ]
    )
    moved, retracted = (not isinstance(r, Exception) for r in results)
    assert moved != retracted, results
    if moved:
        assert isinstance(results[1], AliasInUseError)
        assert meta.aliases.get("alice", "live").version == 3
    else:
        assert isinstance(results[0], InvalidTransitionError)
        assert meta.aliases.get("alice", "live").version == 1
