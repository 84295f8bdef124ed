"""Erasure and retention in the core, on SQLite + folder and PostgreSQL + S3: what an erasure
removes and what it keeps (another persona's copy of the same photo), that it resumes after a
crash and reports an erased subject, and that GC never deletes a blob a live version or an
upload in flight holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_core.erasure import erase
from persona_core.errors import (
    AlreadyExistsError,
    InvalidInputError,
    PersonaErasedError,
    VersionErasedError,
)
from persona_core.ingest import resubmit_version, submit_version
from persona_core.publish import publish_pack
from persona_core.refs import sha256_hex
from persona_core.retention import collect_garbage
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore, VersionStatus
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack

S = VersionStatus
FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
ALICE_ONLY, SHARED, BOB_ONLY = "obama.jpg", "obama1.jpg", "biden.jpg"


@pytest.fixture
def stores(persona_settings: Settings) -> Iterator[tuple[MetadataStore, BlobStore]]:
    meta, blobs = open_metadata_store(persona_settings), open_blob_store(persona_settings)
    yield meta, blobs
    meta.close()
    blobs.close()


def _photo(name: str) -> tuple[str, bytes, str]:
    return name, (FACES / name).read_bytes(), "image"


def _ref(name: str) -> str:
    return f"sha256:{sha256_hex((FACES / name).read_bytes())}"


def _two_people(meta: MetadataStore, blobs: BlobStore) -> None:
    """alice: v1 published (one photo shared with bob), v2 failed; bob: v1 published."""
    meta.create_persona("alice", {"display_name": "Alice A."})
    meta.create_persona("bob", {})
    submit_version(meta, blobs, "alice", [_photo(ALICE_ONLY), _photo(SHARED)])
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1, seed=1))
    v2 = submit_version(meta, blobs, "alice", [_photo(ALICE_ONLY)])
    meta.transition("alice", v2.version, S.FAILED, reasons=["step failed"])
    submit_version(meta, blobs, "bob", [_photo(SHARED), _photo(BOB_ONLY)])
    publish_pack(meta, blobs, make_pack(blobs, "bob", 1, seed=2))


def test_erasing_a_persona_removes_what_only_it_held_and_keeps_the_shared_photo(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    _two_people(meta, blobs)
    alice_only = {h.ref for h in meta.refs.held_by("alice")} - {h.ref for h in meta.refs.held_by("bob")}
    bob_pack = meta.get_published("bob", 1)
    report = erase(meta, blobs, "alice", actor="test", reason="data subject request")
    assert (report.state, report.versions, report.already_erased) == ("erased", (1, 2), False)
    assert report.kept_shared >= 1
    assert "outside the registry's reach" in report.as_dict()["note"]
    for ref in alice_only:
        assert not (ref.startswith("sha256:") and blobs.exists(ref)), ref
    assert blobs.exists(_ref(SHARED))  # bob still holds it
    assert not blobs.exists(_ref(ALICE_ONLY))
    # Bob is whole: his pack and every blob it names.
    assert meta.get_published("bob", 1) == bob_pack
    for ref in [bob_pack.pack_ref, *bob_pack.blob_refs]:
        assert blobs.exists(ref.partition("#")[0])
    # Alice answers as erased everywhere; what stays is a tombstone with no content.
    with pytest.raises(PersonaErasedError) as erased:
        meta.get_persona("alice")
    assert erased.value.erased_at is not None
    with pytest.raises(PersonaErasedError):
        meta.list_versions("alice")
    with pytest.raises(PersonaErasedError):
        meta.get_published("alice")
    assert [p.persona_id for p in meta.list_personas()] == ["bob"]
    assert meta.refs.held_by("alice") == []
    with pytest.raises(AlreadyExistsError, match="its id is not reused"):
        meta.create_persona("alice", {})
    manifests = blobs.list_objects("manifests/")
    assert not any(key.endswith(("-alice-v1.json", "-alice-v2.json")) for key in manifests)
    [done, start] = list(meta.tombstones.audit_log())[:2]
    assert (start.action, done.action) == ("erase.start", "erase.done")
    assert "Alice" not in repr(done)
    assert ALICE_ONLY not in repr(done)
    # A second call reports the erasure, it does not run it again.
    again = erase(meta, blobs, "alice", actor="test", reason="again")
    assert (again.already_erased, again.finished_at) == (True, report.finished_at)


def test_erasing_one_version_keeps_what_the_next_version_holds(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    meta.create_persona("alice", {})
    submit_version(meta, blobs, "alice", [_photo(ALICE_ONLY)])
    publish_pack(meta, blobs, make_pack(blobs, "alice", 1, seed=1))
    resubmit_version(meta, blobs, "alice", 1)  # v2: the same photo, a rebuild
    publish_pack(meta, blobs, make_pack(blobs, "alice", 2, seed=2))
    v1_pack = meta.get_published("alice", 1)
    erase(meta, blobs, "alice", 1, actor="test", reason="wrong photos")
    assert blobs.exists(_ref(ALICE_ONLY))  # v2 holds it
    assert not blobs.exists(v1_pack.pack_ref)
    assert meta.get_published("alice").version == 2  # latest moves to what remains
    with pytest.raises(VersionErasedError):
        meta.get_published("alice", 1)
    v1 = meta.get_version("alice", 1)
    assert (v1.status, v1.inputs, v1.checks, v1.reasons) == (S.ERASED, {}, [], [])


def test_an_interrupted_erasure_resumes_and_reads_were_gone_from_its_start(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    _two_people(meta, blobs)
    job = meta.tombstones.start("alice", None, actor="test", reason="request")  # then the process died
    with pytest.raises(PersonaErasedError):
        meta.get_published("alice", 1)
    assert blobs.exists(_ref(ALICE_ONLY))  # nothing deleted yet
    report = erase(meta, blobs, "alice", actor="test", reason="request")
    assert report.started_at == job.started_at  # the same job, resumed
    assert report.state == "erased"
    assert not blobs.exists(_ref(ALICE_ONLY))


def test_an_erasure_needs_a_reason_and_changes_nothing_without_one(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    _two_people(meta, blobs)
    with pytest.raises(InvalidInputError, match="reason"):
        erase(meta, blobs, "alice", actor="test", reason="  ")
    assert meta.get_published("alice", 1).version == 1


def test_gc_deletes_what_nothing_holds_after_the_grace_period_only(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    _two_people(meta, blobs)
    orphan = blobs.put(b"an intermediate of a build that died")
    held_before = meta.refs.all_held("blob")
    dry = collect_garbage(meta, blobs, retention_days=30, grace_s=0, dry_run=True)
    assert dry.blobs_deleted == 1
    assert blobs.exists(orphan)  # a dry run deletes nothing
    young = collect_garbage(meta, blobs, retention_days=30, grace_s=3600)
    assert (young.blobs_deleted, young.kept_young) == (0, 1)
    report = collect_garbage(meta, blobs, retention_days=30, grace_s=0)
    assert report.blobs_deleted == 1
    assert not blobs.exists(orphan)
    for ref in held_before:
        assert blobs.exists(ref)
    assert meta.get_published("bob", 1).version == 1


def test_retention_erases_versions_that_never_published(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    meta, blobs = stores
    _two_people(meta, blobs)
    later = datetime.now(UTC) + timedelta(days=31)
    report = collect_garbage(meta, blobs, retention_days=30, grace_s=0, now=later)
    assert report.expired_versions == ["alice v2"]
    assert meta.get_version("alice", 2).status is S.ERASED
    assert meta.get_published("alice", 1).version == 1  # published versions stay
    assert blobs.exists(_ref(ALICE_ONLY))  # v1 holds it too
    [line] = [a for a in meta.tombstones.audit_log() if a.action == "gc.run"]
    assert line.detail["expired_versions"] == 1


@pytest.mark.parametrize("round_", range(20))
def test_gc_never_deletes_a_blob_an_upload_in_flight_reuses(
    stores: tuple[MetadataStore, BlobStore], round_: int
) -> None:
    """An old unheld copy of a photo, GC sweeping it while an upload of the same photo is
    stored: whichever order the database gives them, the upload's version ends with its blob."""
    meta, blobs = stores
    meta.create_persona("alice", {})
    data = (FACES / SHARED).read_bytes() + round_.to_bytes(4, "big")  # a fresh blob each round
    ref = blobs.put(data)  # left by an earlier upload whose version was erased: nobody holds it
    start, results = threading.Barrier(2), {}

    def upload() -> None:
        start.wait()
        results["version"] = submit_version(meta, blobs, "alice", [("photo.jpg", data, "image")]).version

    def sweep() -> None:
        start.wait()
        results["gc"] = collect_garbage(meta, blobs, retention_days=30, grace_s=0).blobs_deleted

    threads = [threading.Thread(target=upload), threading.Thread(target=sweep)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert meta.get_version("alice", results["version"]).inputs["files"][0]["ref"] == ref
    assert blobs.get(ref) == data  # present and whole, whoever won


def test_erasing_a_persona_takes_its_events_and_its_place_in_webhook_filters(
    stores: tuple[MetadataStore, BlobStore],
) -> None:
    from persona_core.store.events import EventLog  # noqa: PLC0415
    from persona_core.webhooks.store import WebhookStore  # noqa: PLC0415

    meta, blobs = stores
    _two_people(meta, blobs)
    hooks = WebhookStore(meta.database)  # type: ignore[attr-defined]
    only_alice = hooks.create("https://hooks.example.com/a", created_by="test", persona_ids=["alice"])
    both = hooks.create("https://hooks.example.com/b", created_by="test", persona_ids=["alice", "bob"])
    erase(meta, blobs, "alice", actor="test", reason="request")
    events = EventLog(meta.database).after(0, limit=1000)  # type: ignore[attr-defined]
    assert [e.type for e in events if e.persona_id == "alice"] == ["persona.erased"]
    assert any(e.persona_id == "bob" for e in events)
    assert not hooks.get(only_alice.id).enabled
    assert list(hooks.get(both.id).persona_ids or []) == ["bob"]
