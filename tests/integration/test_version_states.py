"""The version state machine, on SQLite and a real PostgreSQL: every allowed move succeeds and
every other one is refused by the database's compare-and-set (nothing changes); the lease is
columns; a read-time settle racing a live heartbeat never fails a build whose heartbeat was
taken; a server schema is migrated once, by `persona-core migrate`, never by opening a store."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
import sqlalchemy as sa
from services import PostgresService
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.errors import (
    BuildInProgressError,
    ImmutableVersionError,
    InvalidTransitionError,
    SchemaOutdatedError,
)
from persona_core.settings import Settings
from persona_core.store import migrate
from persona_core.store.base import BuildLease, PublishedPack, VersionRecord, VersionStatus
from persona_core.store.engine import Database
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.version_states import ALLOWED
from persona_core.versions import DIED_PREFIX, NOT_STARTED_PREFIX, dead_build_cause, settle_dead_build

S = VersionStatus
BUILDER = BuildLease("builder-1", 4242, "run-1")
OTHER_BUILDER = BuildLease("builder-2", 99, "run-2")
SAME_PROCESS = BuildLease("builder-1", 4242, "run-3")  # the CLI hands its lease to its run

# Spelled out, not read from ALLOWED: changing the machine should fail this test on purpose.
EXPECTED = {
    S.PENDING: {S.BUILDING, S.BLOCKED, S.FAILED, S.PUBLISHED, S.ERASING},
    S.BUILDING: {S.BUILDING, S.BLOCKED, S.FAILED, S.PUBLISHED, S.ERASING},
    S.BLOCKED: {S.BUILDING, S.BLOCKED, S.FAILED, S.ERASING},
    S.FAILED: {S.BUILDING, S.BLOCKED, S.FAILED, S.ERASING},
    S.PUBLISHED: {S.RETRACTED, S.ERASING},
    S.RETRACTED: {S.ERASING},
    S.ERASING: {S.ERASING, S.ERASED},
    S.ERASED: set(),
}


def _pack(version: int) -> PublishedPack:
    return PublishedPack("alice", version, "sha256:" + "a" * 64, "b" * 64, [])


def _put_in(store: SqlMetadataStore, status: VersionStatus) -> int:
    """A new version of alice standing in ``status``."""
    version = store.create_version("alice", {"files": []}).version
    if status is S.BUILDING:
        store.claim("alice", version, BUILDER)
    elif status in (S.PUBLISHED, S.RETRACTED):
        store.publish(_pack(version), checks=[])
        if status is S.RETRACTED:
            store.transition("alice", version, S.RETRACTED, reasons=["wrong person in photo 3"])
    elif status in (S.ERASING, S.ERASED):
        store.transition("alice", version, S.ERASING)
        if status is S.ERASED:
            store.transition("alice", version, S.ERASED)
    elif status is not S.PENDING:
        store.transition("alice", version, status, reasons=["set up"])
    assert store.get_version("alice", version).status is status
    return version


def _move(store: SqlMetadataStore, version: int, to: VersionStatus) -> VersionRecord:
    if to is S.BUILDING:
        return store.claim("alice", version, SAME_PROCESS)
    if to is S.PUBLISHED:
        return store.publish(_pack(version), checks=[])
    return store.transition("alice", version, to, reasons=["moved"])


def test_the_machine_is_the_documented_one() -> None:
    assert {k: set(v) for k, v in ALLOWED.items()} == EXPECTED


@pytest.mark.parametrize(("start", "to"), list(product(S, S)), ids=lambda s: s.value)
def test_every_transition_is_allowed_or_refused_by_the_database(
    metadata_store: SqlMetadataStore, start: VersionStatus, to: VersionStatus
) -> None:
    metadata_store.create_persona("alice", {})
    version = _put_in(metadata_store, start)
    before = metadata_store.get_version("alice", version)
    if to in EXPECTED[start]:
        moved = _move(metadata_store, version, to)
        assert moved.status is to
        assert (moved.lease is not None) == (to is S.BUILDING)  # only building holds a lease
        return
    error = ImmutableVersionError if start is S.PUBLISHED else InvalidTransitionError
    with pytest.raises(error):
        _move(metadata_store, version, to)
    assert metadata_store.get_version("alice", version) == before  # a refused move changes nothing


def test_a_live_build_of_another_process_cannot_be_claimed_or_ended_by_another_run(
    metadata_store: SqlMetadataStore,
) -> None:
    metadata_store.create_persona("alice", {})
    version = _put_in(metadata_store, S.BUILDING)
    with pytest.raises(BuildInProgressError, match="being built by run run-1, pid 4242 on builder-1"):
        metadata_store.claim("alice", version, OTHER_BUILDER)
    with pytest.raises(BuildInProgressError):
        metadata_store.transition("alice", version, S.FAILED, reasons=["x"], run_id="run-2")
    with pytest.raises(BuildInProgressError):
        metadata_store.transition("alice", version, S.BLOCKED, reasons=["x"], holder=OTHER_BUILDER)
    assert metadata_store.get_version("alice", version).lease == BUILDER
    assert not metadata_store.heartbeat("alice", version, OTHER_BUILDER)
    assert metadata_store.heartbeat("alice", version, BUILDER)
    ended = metadata_store.transition("alice", version, S.FAILED, reasons=["step failed"], run_id="run-1")
    assert (ended.status, ended.lease, ended.heartbeat_at) == (S.FAILED, None, None)
    assert not metadata_store.heartbeat("alice", version, BUILDER)  # the lease went with the build


def test_the_lease_lives_in_columns_not_in_reasons(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    born = metadata_store.create_version("alice", {"files": []}, lease=BUILDER)
    assert (born.status, born.lease, born.reasons) == (S.BUILDING, BUILDER, [])
    assert born.heartbeat_at is not None
    with metadata_store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT lease_host, lease_pid, lease_run_id FROM persona_versions")).one()
    assert tuple(row) == ("builder-1", 4242, "run-1")


def test_a_pending_version_no_build_picked_up_gets_a_reason_and_can_be_rerun(
    metadata_store: SqlMetadataStore,
) -> None:
    metadata_store.create_persona("alice", {})
    pending = metadata_store.create_version("alice", {"files": []})
    assert settle_dead_build(metadata_store, pending, ttl_s=30, pending_timeout_s=600) is pending
    later = datetime.now(UTC) + timedelta(minutes=11)
    cause = dead_build_cause(pending, ttl_s=30, pending_timeout_s=600, now=later)
    assert cause is not None
    assert cause.startswith(f"{NOT_STARTED_PREFIX} in 10 min")
    failed = metadata_store.settle(pending, cause)
    assert failed is not None
    assert (failed.status, failed.reasons) == (S.FAILED, [cause])
    assert metadata_store.claim("alice", pending.version, BUILDER).status is S.BUILDING  # re-run


@pytest.mark.postgres
def test_a_settle_racing_a_live_heartbeat_never_fails_a_build_whose_beat_was_taken(
    postgres_url: str,
) -> None:
    """200 versions, each with a heartbeat older than the TTL (a paused build) that beats again
    at the moment a reader settles it from its stale read: exactly one of the two wins."""
    reader = SqlMetadataStore.open(postgres_url)
    builder = SqlMetadataStore.open(postgres_url)  # another pool, as another process would have
    reader.create_persona("alice", {})
    ttl_s, wins = 0.02, {"heartbeat": 0, "settle": 0}
    try:
        for _ in range(200):
            version = reader.create_version("alice", {"files": []}, lease=BUILDER).version
            time.sleep(ttl_s * 1.5)
            stale = reader.get_version("alice", version)
            assert dead_build_cause(stale, ttl_s=ttl_s) is not None
            beat_taken, settled = _race(reader, builder, stale)
            final = reader.get_version("alice", version)
            assert beat_taken != settled  # one winner, never both
            if beat_taken:
                assert (final.status, final.lease) == (S.BUILDING, BUILDER)  # the live build kept it
                wins["heartbeat"] += 1
            else:
                assert final.status is S.FAILED
                assert final.reasons[0].startswith(DIED_PREFIX)
                wins["settle"] += 1
    finally:
        reader.close()
        builder.close()
    print(f"settle vs heartbeat, 200 races: {wins}")
    assert sum(wins.values()) == 200


def _race(reader: SqlMetadataStore, builder: SqlMetadataStore, stale: VersionRecord) -> tuple[bool, bool]:
    """The builder's heartbeat and the reader's settle from ``stale``, released together on two
    threads: (heartbeat taken, version failed by the settle)."""
    start, results = threading.Barrier(2), {}

    def settle() -> None:
        start.wait()
        results["settled"] = settle_dead_build(reader, stale, ttl_s=0).status is S.FAILED

    def beat() -> None:
        start.wait()
        results["beat"] = builder.heartbeat("alice", stale.version, BUILDER)

    threads = [threading.Thread(target=settle), threading.Thread(target=beat)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results["beat"], results["settled"]


def test_a_build_that_stops_beating_is_failed_once_its_ttl_passes(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    record = metadata_store.create_version("alice", {"files": []}, lease=OTHER_BUILDER)
    assert settle_dead_build(metadata_store, record, ttl_s=0.3).status is S.BUILDING
    time.sleep(0.4)
    failed = settle_dead_build(metadata_store, metadata_store.get_version("alice", record.version), ttl_s=0.3)
    assert failed.status is S.FAILED
    assert failed.reasons[0].startswith(f"{DIED_PREFIX} (run run-2, pid 99 on builder-2: no heartbeat for")


# --- migrate once -----------------------------------------------------------------------


def _revision(url: str) -> str | None:
    db = Database.connect(url)
    try:
        return migrate.current_revision(db)
    finally:
        db.close()


@pytest.mark.postgres
def test_a_postgres_store_on_an_old_schema_is_refused_until_persona_core_migrate(
    postgres_server: PostgresService, tmp_path: object
) -> None:
    url = postgres_server.create_database(migrated=False)
    try:
        with pytest.raises(SchemaOutdatedError, match="persona-core migrate"):
            SqlMetadataStore.open(url)
        assert _revision(url) is None  # opening ran no migration
        db = Database.connect(url)
        migrate.upgrade(db, "0001_initial")
        db.close()
        with pytest.raises(SchemaOutdatedError, match=r"at '0001_initial'.*run `persona-core migrate`"):
            SqlMetadataStore.open(url)
        assert _revision(url) == "0001_initial"
        result = CliRunner().invoke(app, ["--json", "migrate"], env={"PERSONA_DATABASE_URL": url})
        assert result.exit_code == 0, result.output
        assert '"from_revision": "0001_initial"' in result.stdout
        assert _revision(url) == migrate.head_revision()
        SqlMetadataStore.open(url).close()
        # The CLI names the command too, with its typed code and exit status.
        fresh = postgres_server.create_database(migrated=False)
        result = CliRunner().invoke(app, ["--json", "versions", "alice"], env={"PERSONA_DATABASE_URL": fresh})
        assert result.exit_code != 0
        assert "schema_outdated" in result.output
        assert "persona-core migrate" in result.output
        postgres_server.drop_database(fresh)
    finally:
        postgres_server.drop_database(url)


def test_the_embedded_sqlite_default_upgrades_itself_and_carries_old_leases_over(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    db = Database.connect(url)
    migrate.upgrade(db, "0001_initial")
    now = datetime.now(UTC)
    with db.tx(write=True) as conn:
        conn.execute(sa.text("INSERT INTO personas VALUES ('alice', '{}', :now)"), {"now": now})
        conn.execute(
            sa.text("INSERT INTO persona_versions (persona_id, version, status, reasons, inputs, checks, "
                    "created_at, updated_at) "
                    "VALUES ('alice', 1, 'building', :reasons, '{}', '[]', :now, :now)"),
            {"reasons": '["build lease: run abc pid 77 on host-9"]', "now": now},
        )
        # An uploaded file, so the erasure migration's backfill of what versions hold runs too.
        conn.execute(
            sa.text("UPDATE persona_versions SET inputs = :inputs"),
            {"inputs": '{"files": [{"ref": "sha256:' + "1" * 64 + '"}]}'},
        )
    db.close()
    store = SqlMetadataStore.open(url)  # first use by new code: upgrades itself
    try:
        record = store.get_version("alice", 1)
        assert (record.lease, record.reasons) == (BuildLease("host-9", 77, "abc"), [])
        assert record.heartbeat_at is not None
        assert [h.ref for h in store.refs.held_by("alice")] == ["sha256:" + "1" * 64]
        store.downgrade("0001_initial")
        with store.engine.connect() as conn:
            reasons = conn.execute(sa.text("SELECT reasons FROM persona_versions")).scalar_one()
        assert "build lease: run abc pid 77 on host-9" in reasons
    finally:
        store.close()


def test_a_lease_ttl_shorter_than_a_few_heartbeats_is_refused() -> None:
    with pytest.raises(ValueError, match="PERSONA_LEASE_TTL_S"):
        Settings(lease_heartbeat_s=5, lease_ttl_s=6)
    result = CliRunner().invoke(app, ["--json", "versions", "alice"],
                                env={"PERSONA_LEASE_HEARTBEAT_S": "5", "PERSONA_LEASE_TTL_S": "6"})
    assert result.exit_code == 2, result.output
    assert "PERSONA_LEASE_TTL_S" in result.output
