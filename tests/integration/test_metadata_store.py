"""Metadata store contract, run on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from services import free_ports

from persona_core.errors import (
    AlreadyExistsError,
    ImmutableVersionError,
    InvalidInputError,
    InvalidNameError,
    InvalidTransitionError,
    NotFoundError,
    PersonaNotFoundError,
    StoreUnavailableError,
    VersionNotFoundError,
)
from persona_core.store.base import BuildLease, PublishedPack, VersionStatus
from persona_core.store.engine import Database
from persona_core.store.metadata import SqlMetadataStore
from registry_api.key_store import ApiKeyStore

S = VersionStatus
LEASE = BuildLease("builder-1", 4242, "run-1")
PACK_REF = "sha256:" + "a" * 64
HASH = "b" * 64


def _published(persona: str, version: int) -> PublishedPack:
    return PublishedPack(persona, version, PACK_REF, HASH, ["sha256:" + "c" * 64])


def test_personas_create_get_and_page(metadata_store: SqlMetadataStore) -> None:
    for pid in ["carol", "alice", "bob"]:
        metadata_store.create_persona(pid, {"display_name": pid.title()})
    assert metadata_store.get_persona("bob").metadata == {"display_name": "Bob"}
    first = metadata_store.list_personas(limit=2)
    assert [p.persona_id for p in first] == ["alice", "bob"]
    assert [p.persona_id for p in metadata_store.list_personas(limit=2, after="bob")] == ["carol"]
    with pytest.raises(AlreadyExistsError):
        metadata_store.create_persona("alice", {})
    with pytest.raises(PersonaNotFoundError):
        metadata_store.get_persona("nobody")


@pytest.mark.parametrize("bad", ["", "Alice", "../x", "a/b", "a\x00b", "-lead", "x" * 64])
def test_bad_persona_ids_are_rejected(metadata_store: SqlMetadataStore, bad: str) -> None:
    with pytest.raises(InvalidNameError):
        metadata_store.create_persona(bad, {})
    assert metadata_store.list_personas() == []


def test_versions_are_numbered_per_persona(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    metadata_store.create_persona("bob", {})
    assert [metadata_store.create_version("alice", {"n": i}).version for i in range(3)] == [1, 2, 3]
    assert metadata_store.create_version("bob", {}).version == 1
    listed = metadata_store.list_versions("alice")
    assert [(v.version, v.status, v.inputs) for v in listed] == [
        (1, S.PENDING, {"n": 0}),
        (2, S.PENDING, {"n": 1}),
        (3, S.PENDING, {"n": 2}),
    ]
    with pytest.raises(PersonaNotFoundError):
        metadata_store.create_version("nobody", {})
    with pytest.raises(VersionNotFoundError):
        metadata_store.get_version("alice", 9)
    with pytest.raises(PersonaNotFoundError):
        metadata_store.list_versions("nobody")


def test_status_moves_and_records_reasons(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    metadata_store.create_version("alice", {})
    metadata_store.claim("alice", 1, LEASE)
    blocked = metadata_store.transition(
        "alice", 1, S.BLOCKED, reasons=["A_SELFIE: 1 usable anchor, need 3"], checks=[{"name": "enough"}]
    )
    assert blocked.status == S.BLOCKED
    assert blocked.reasons == ["A_SELFIE: 1 usable anchor, need 3"]
    assert blocked.checks == [{"name": "enough"}]
    assert blocked.updated_at >= blocked.created_at
    # A re-run after the uploader adds photos starts building again.
    assert metadata_store.claim("alice", 1, LEASE).status == S.BUILDING
    with pytest.raises(InvalidTransitionError):
        metadata_store.transition("alice", 1, S.PUBLISHED)
    with pytest.raises(InvalidInputError):
        metadata_store.transition("alice", 1, "done")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [S.BLOCKED, S.FAILED])
def test_blocked_or_failed_versions_cannot_publish(metadata_store: SqlMetadataStore, status: S) -> None:
    metadata_store.create_persona("alice", {})
    metadata_store.create_version("alice", {})
    metadata_store.transition("alice", 1, status, reasons=["why"])
    with pytest.raises(InvalidTransitionError):
        metadata_store.publish(_published("alice", 1), checks=[])
    assert metadata_store.get_version("alice", 1).status == status
    with pytest.raises(VersionNotFoundError):
        metadata_store.get_published("alice", 1)


def test_publish_records_pack_and_flips_status(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    metadata_store.create_version("alice", {})
    metadata_store.create_version("alice", {})
    with pytest.raises(VersionNotFoundError):
        metadata_store.get_published("alice")
    rec = metadata_store.publish(_published("alice", 1), checks=[{"name": "ok", "passed": True}])
    assert rec.status == S.PUBLISHED
    assert (rec.pack_ref, rec.content_hash) == (PACK_REF, HASH)
    assert rec.published_at is not None
    assert rec.checks == [{"name": "ok", "passed": True}]
    metadata_store.claim("alice", 2, LEASE)
    metadata_store.publish(PublishedPack("alice", 2, "sha256:" + "d" * 64, "e" * 64, []), checks=[])
    assert metadata_store.get_published("alice").version == 2
    assert metadata_store.get_published("alice", 1).pack_ref == PACK_REF
    with pytest.raises(VersionNotFoundError):
        metadata_store.publish(_published("alice", 7), checks=[])
    with pytest.raises(PersonaNotFoundError):
        metadata_store.get_published("nobody")


def test_published_version_never_changes(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    metadata_store.create_version("alice", {})
    metadata_store.publish(_published("alice", 1), checks=[{"name": "first"}])
    before = (metadata_store.get_version("alice", 1), metadata_store.get_published("alice", 1))

    other = PublishedPack("alice", 1, "sha256:" + "f" * 64, "0" * 64, [])
    with pytest.raises(ImmutableVersionError):
        metadata_store.publish(other, checks=[{"name": "second"}])
    for status in (S.PENDING, S.FAILED, S.BLOCKED):
        with pytest.raises(ImmutableVersionError):
            metadata_store.transition("alice", 1, status, reasons=["rewrite"])
    with pytest.raises(ImmutableVersionError):
        metadata_store.claim("alice", 1, LEASE)
    # Even SQL that bypasses the store is refused by the database's triggers.
    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE persona_versions SET status = 'failed' WHERE persona_id = 'alice'"))
    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE published_packs SET pack_ref = 'x' WHERE persona_id = 'alice'"))
    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM published_packs"))

    assert (metadata_store.get_version("alice", 1), metadata_store.get_published("alice", 1)) == before


def test_twenty_concurrent_version_creations_get_distinct_consecutive_numbers(database_url: str) -> None:
    setup = SqlMetadataStore.open(database_url)
    setup.create_persona("alice", {})
    # One store (engine, connection pool) per thread: as many separate clients as threads.
    stores = [SqlMetadataStore.open(database_url) for _ in range(20)]
    start = threading.Barrier(len(stores))

    def create(store: SqlMetadataStore) -> int:
        start.wait()
        return store.create_version("alice", {"by": id(store)}).version

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            numbers = list(pool.map(create, stores))
        assert sorted(numbers) == list(range(1, 21))
        assert [v.version for v in setup.list_versions("alice")] == list(range(1, 21))
    finally:
        for store in [setup, *stores]:
            store.close()


def test_concurrent_publishes_of_one_version_let_exactly_one_win(database_url: str) -> None:
    setup = SqlMetadataStore.open(database_url)
    setup.create_persona("alice", {})
    setup.create_version("alice", {})
    stores = [SqlMetadataStore.open(database_url) for _ in range(6)]
    start = threading.Barrier(len(stores))

    def publish(i: int) -> str:
        start.wait()
        pack = PublishedPack("alice", 1, f"sha256:{i:064x}", f"{i:064x}", [])
        try:
            stores[i].publish(pack, checks=[])
        except ImmutableVersionError:
            return "refused"
        return pack.pack_ref

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            outcomes = list(pool.map(publish, range(len(stores))))
        winners = [o for o in outcomes if o != "refused"]
        assert len(winners) == 1
        assert setup.get_published("alice", 1).pack_ref == winners[0]
    finally:
        for store in [setup, *stores]:
            store.close()


def test_api_keys_store_only_a_hash_and_verify(metadata_store: SqlMetadataStore) -> None:
    keys = ApiKeyStore.of(metadata_store)
    metadata_store.create_persona("alice", {})
    record, plaintext = keys.create_api_key("renderer", ["packs:read"], persona_ids=["alice"])
    assert plaintext.startswith(f"pk_{record.key_id}_")
    secret = plaintext.split("_", 2)[2]
    assert len(secret) >= 43  # 32 random bytes, base64url
    assert keys.verify_api_key(plaintext) == record
    assert record.scopes == ["packs:read"]
    assert record.persona_ids == ["alice"]

    with metadata_store.engine.connect() as conn:
        dump = repr(conn.execute(sa.text("SELECT * FROM api_keys")).all())
    assert secret not in dump

    assert keys.verify_api_key(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert keys.verify_api_key(f"pk_{'0' * 16}_{secret}") is None
    for junk in ["", "pk_", "Bearer x", "pk_zz_secret", plaintext + "\x00"]:
        assert keys.verify_api_key(junk) is None

    admin, admin_plain = keys.create_api_key("ops", ["admin", "packs:write"])
    assert admin.persona_ids is None
    assert [k.key_id for k in keys.list_api_keys()] == [record.key_id, admin.key_id]

    revoked = keys.revoke_api_key(record.key_id)
    assert revoked.revoked
    assert keys.revoke_api_key(record.key_id).revoked_at == revoked.revoked_at
    assert keys.verify_api_key(plaintext) is None
    assert keys.verify_api_key(admin_plain) == admin
    with pytest.raises(NotFoundError):
        keys.revoke_api_key("f" * 16)


@pytest.mark.parametrize(
    ("name", "scopes", "persona_ids"),
    [
        ("", ["packs:read"], None),
        ("x", [], None),
        ("x", ["Bad Scope"], None),
        ("x", ["packs:read"], ["../a"]),
    ],
)
def test_bad_api_key_requests_are_rejected(
    metadata_store: SqlMetadataStore, name: str, scopes: list[str], persona_ids: list[str] | None
) -> None:
    keys = ApiKeyStore.of(metadata_store)
    with pytest.raises(InvalidInputError):
        keys.create_api_key(name, scopes, persona_ids)
    assert keys.list_api_keys() == []


def test_non_json_inputs_are_rejected(metadata_store: SqlMetadataStore) -> None:
    metadata_store.create_persona("alice", {})
    with pytest.raises(InvalidInputError):
        metadata_store.create_version("alice", {"blob": object()})
    with pytest.raises(InvalidInputError):
        metadata_store.create_persona("bob", {"x": {1, 2}})
    assert metadata_store.list_versions("alice") == []


def test_reopening_keeps_data_and_schema(database_url: str) -> None:
    first = SqlMetadataStore.open(database_url)
    first.create_persona("alice", {"k": 1})
    first.close()
    again = SqlMetadataStore.open(database_url)
    assert again.get_persona("alice").metadata == {"k": 1}
    again.ping()
    again.close()


@pytest.mark.postgres
def test_unreachable_postgres_is_unavailable() -> None:
    port = free_ports(1)[0]
    store = SqlMetadataStore(Database.connect(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"))
    with pytest.raises(StoreUnavailableError):
        store.ping()
    with pytest.raises(StoreUnavailableError):
        store.get_persona("alice")
