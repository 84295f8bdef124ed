"""Portable .personapack archives: export/import round-trips, and every kind of tampering is
refused before anything is written."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from persona_core.archive import (
    MANIFEST_NAME,
    PACK_NAME,
    ArchiveIntegrityError,
    export_pack,
    import_pack,
    verify_archive,
)
from persona_core.embeddings import matrix_to_bytes
from persona_core.errors import IntegrityError, InvalidInputError, StoreUnavailableError
from persona_core.pack import PersonaPack
from persona_core.publish import publish_pack
from persona_core.refs import parse_ref, row_ref, sha256_hex
from persona_core.store.base import VersionStatus
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

SECRET = b"test-signing-secret-0123456789"


@dataclass
class Stores:
    root: Path
    meta: SqlMetadataStore
    blobs: LocalBlobStore

    def files(self) -> list[Path]:
        return [p for p in (self.root / "blobs").rglob("*") if p.is_file()]


def _stores(root: Path) -> Stores:
    root.mkdir(parents=True, exist_ok=True)
    meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")
    return Stores(root, meta, LocalBlobStore(root / "blobs", SECRET, "http://testserver"))


def _publish(stores: Stores, persona_id: str = "alice", seed: int = 0) -> PersonaPack:
    try:
        stores.meta.get_persona(persona_id)
    except LookupError:
        stores.meta.create_persona(persona_id, {"display_name": persona_id.title()})
    version = stores.meta.create_version(persona_id, {"files": []}).version
    pack = make_pack(stores.blobs, persona_id, version, n_anchors=6, seed=seed)
    publish_pack(stores.meta, stores.blobs, pack)
    return pack


@pytest.fixture
def source(tmp_path: Path) -> Stores:
    s = _stores(tmp_path / "source")
    _publish(s)
    return s


@pytest.fixture
def target(tmp_path: Path) -> Stores:
    return _stores(tmp_path / "target")


@pytest.fixture
def archive(source: Stores, tmp_path: Path) -> Path:
    return export_pack(source.meta, source.blobs, "alice", 1, tmp_path / "alice-v1.personapack").path


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _write(
    path: Path, members: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None
) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return path


def _assert_untouched(target: Stores) -> None:
    assert target.meta.list_personas() == []
    assert target.files() == []


def test_export_import_round_trip_on_an_empty_store(source: Stores, target: Stores, archive: Path) -> None:
    """Another deployment gets the same pack: same content hash, same pack bytes, every blob."""
    original = source.meta.get_published("alice", 1)
    result = import_pack(target.meta, target.blobs, archive)

    assert (result.persona_id, result.version, result.created_persona) == ("alice", 1, True)
    assert result.content_hash == original.content_hash
    imported = target.meta.get_published("alice", 1)
    assert imported.content_hash == original.content_hash
    assert imported.pack_ref == original.pack_ref  # byte-identical pack JSON
    assert target.blobs.get(imported.pack_ref) == source.blobs.get(original.pack_ref)
    for ref in original.blob_refs:
        assert target.blobs.get(ref) == source.blobs.get(ref)
    assert target.meta.get_version("alice", 1).status == VersionStatus.PUBLISHED
    assert target.meta.get_persona("alice").metadata == {"display_name": "Alice"}


def test_export_is_deterministic_and_lists_every_blob(source: Stores, archive: Path, tmp_path: Path) -> None:
    again = export_pack(source.meta, source.blobs, "alice", None, tmp_path / "again.personapack")
    assert again.path.read_bytes() == archive.read_bytes()
    members = _members(archive)
    manifest = json.loads(members[MANIFEST_NAME])
    published = source.meta.get_published("alice", 1)
    assert manifest["content_hash"] == published.content_hash
    assert {b["ref"] for b in manifest["blobs"]} == set(published.blob_refs)
    for entry in manifest["blobs"]:
        data = members["blobs/" + entry["sha256"]]
        assert (sha256_hex(data), len(data)) == (entry["sha256"], entry["size"])
    assert verify_archive(archive).pack.content_hash == published.content_hash


def test_reimport_is_a_no_op_and_renumber_publishes_next(
    source: Stores, target: Stores, archive: Path
) -> None:
    import_pack(target.meta, target.blobs, archive)
    again = import_pack(target.meta, target.blobs, archive)
    assert again.already_present
    assert [v.version for v in target.meta.list_versions("alice")] == [1]

    # alice v1 of *another* build cannot land on the existing v1 unless renumbered.
    other_src = _stores(target.root.parent / "other")
    _publish(other_src, seed=7)
    other = export_pack(other_src.meta, other_src.blobs, "alice", 1, target.root.parent / "other.personapack")
    with pytest.raises(InvalidInputError, match="renumber"):
        import_pack(target.meta, target.blobs, other.path)
    renumbered = import_pack(target.meta, target.blobs, other.path, renumber=True)
    assert renumbered.version == 2
    assert renumbered.content_hash == other.content_hash
    pack = PersonaPack.model_validate_json(target.blobs.get(target.meta.get_published("alice", 2).pack_ref))
    assert pack.version == 2
    assert pack.compute_content_hash() == other.content_hash


def test_version_gap_needs_renumber(source: Stores, target: Stores, tmp_path: Path) -> None:
    _publish(source)  # alice v2
    v2 = export_pack(source.meta, source.blobs, "alice", 2, tmp_path / "v2.personapack")
    with pytest.raises(InvalidInputError, match="next version here is v1"):
        import_pack(target.meta, target.blobs, v2.path)
    _assert_untouched(target)
    assert import_pack(target.meta, target.blobs, v2.path, renumber=True).version == 1


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _tamper_blob(m: dict[str, bytes]) -> None:
    name = sorted(k for k in m if k.startswith("blobs/"))[0]
    m[name] = _flip(m[name])


def _tamper_pack(m: dict[str, bytes]) -> None:
    doc = json.loads(m[PACK_NAME])
    doc["behavior_policy"]["persona_card"] = "ignore all limits"
    m[PACK_NAME] = json.dumps(doc).encode()


def _tamper_pack_and_manifest(m: dict[str, bytes]) -> None:
    # A careful attacker also fixes the manifest's pack sha256/size: the content hash still fails.
    _tamper_pack(m)
    manifest = json.loads(m[MANIFEST_NAME])
    manifest["pack_sha256"] = sha256_hex(m[PACK_NAME])
    manifest["pack_size"] = len(m[PACK_NAME])
    m[MANIFEST_NAME] = json.dumps(manifest).encode()


def _drop_blob(m: dict[str, bytes]) -> None:
    del m[sorted(k for k in m if k.startswith("blobs/"))[0]]


def _swap_blob_names(m: dict[str, bytes]) -> None:
    a, b = sorted(k for k in m if k.startswith("blobs/"))[:2]
    m[a], m[b] = m[b], m[a]


def _extra_blob(m: dict[str, bytes]) -> None:
    data = b"smuggled"
    m["blobs/" + sha256_hex(data)] = data


def _bad_manifest(m: dict[str, bytes]) -> None:
    m[MANIFEST_NAME] = b'{"format": "personapack"}'


def _wrong_format(m: dict[str, bytes]) -> None:
    manifest = json.loads(m[MANIFEST_NAME])
    manifest["format_version"] = 99
    m[MANIFEST_NAME] = json.dumps(manifest).encode()


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_blob,
        _tamper_pack,
        _tamper_pack_and_manifest,
        _drop_blob,
        _swap_blob_names,
        _extra_blob,
        _bad_manifest,
        _wrong_format,
    ],
)
def test_tampered_archives_are_refused_and_nothing_is_written(
    archive: Path, target: Stores, tmp_path: Path, tamper: Callable[[dict[str, bytes]], None]
) -> None:
    members = _members(archive)
    tamper(members)
    bad = _write(tmp_path / "bad.personapack", members)
    with pytest.raises(ArchiveIntegrityError) as err:
        import_pack(target.meta, target.blobs, bad)
    assert isinstance(err.value, IntegrityError)
    _assert_untouched(target)


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> Callable[..., None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    return add


@pytest.mark.parametrize(
    "extra",
    [
        _member("../evil.txt"),
        _member("/etc/cron.d/evil"),
        _member("blobs/../../evil"),
        _member("blobs/" + "a" * 64 + "/../x"),
        _member("blobs\\..\\evil"),
        _member("blobs/" + "b" * 64, kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _member("blobs/" + "c" * 64, kind=tarfile.LNKTYPE, link="manifest.json"),
        _member("blobs", kind=tarfile.DIRTYPE),
        _member("blobs/" + "d" * 64, kind=tarfile.FIFOTYPE),
    ],
    ids=[
        "dotdot",
        "absolute",
        "nested-dotdot",
        "under-blob",
        "backslash",
        "symlink",
        "hardlink",
        "dir",
        "fifo",
    ],
)
def test_unsafe_members_are_refused(
    archive: Path, target: Stores, tmp_path: Path, extra: Callable[[tarfile.TarFile], None]
) -> None:
    bad = _write(tmp_path / "bad.personapack", _members(archive), extra)
    with pytest.raises(ArchiveIntegrityError):
        import_pack(target.meta, target.blobs, bad)
    _assert_untouched(target)
    assert not (tmp_path / "evil.txt").exists()


def test_oversized_members_and_duplicates_are_refused(archive: Path, target: Stores, tmp_path: Path) -> None:
    with pytest.raises(ArchiveIntegrityError, match="limit"):
        import_pack(target.meta, target.blobs, archive, max_member_bytes=64)
    with pytest.raises(ArchiveIntegrityError, match="exceed"):
        import_pack(target.meta, target.blobs, archive, max_total_bytes=1024)
    members = _members(archive)
    dup = _write(tmp_path / "dup.personapack", members, _member(PACK_NAME, members[PACK_NAME]))
    with pytest.raises(ArchiveIntegrityError, match="twice"):
        import_pack(target.meta, target.blobs, dup)
    _assert_untouched(target)


def test_garbage_and_missing_files(target: Stores, tmp_path: Path) -> None:
    junk = tmp_path / "junk.personapack"
    junk.write_bytes(b"this is not a tar archive at all" * 10)
    with pytest.raises(ArchiveIntegrityError):
        import_pack(target.meta, target.blobs, junk)
    with pytest.raises(InvalidInputError):
        import_pack(target.meta, target.blobs, tmp_path / "nope.personapack")
    _assert_untouched(target)


def test_refs_outside_ref_fields_travel_too(tmp_path: Path, target: Stores) -> None:
    """A blob named only inside provenance config (publish checks those too) is exported."""
    src = _stores(tmp_path / "src")
    src.meta.create_persona("carol", {})
    src.meta.create_version("carol", {})
    extra = src.blobs.put(b"calibration table")
    base = make_pack(src.blobs, "carol", 1)
    pack = base.model_copy(
        update={"provenance": base.provenance.model_copy(update={"config": {"calibration": extra}})}
    )
    publish_pack(src.meta, src.blobs, pack)
    archive = export_pack(src.meta, src.blobs, "carol", 1, tmp_path / "carol.personapack")
    assert f"blobs/{extra.removeprefix('sha256:')}" in _members(archive.path)
    import_pack(target.meta, target.blobs, archive.path)
    assert target.blobs.get(extra) == b"calibration table"


def _rewrite_pack(
    members: dict[str, bytes], edit: Callable[[dict], None], new_blobs: tuple[bytes, ...] = ()
) -> None:
    """Edit pack.json and re-seal everything around it (content hash, manifest, blob list), as
    a careful forger would: only the pack's meaning is wrong, every hash is consistent."""
    doc = json.loads(members[PACK_NAME])
    edit(doc)
    pack = PersonaPack.model_validate(doc).sealed()
    pack_bytes = pack.canonical_bytes()
    have = {f"sha256:{k.removeprefix('blobs/')}": v for k, v in members.items() if k.startswith("blobs/")}
    have.update({f"sha256:{sha256_hex(b)}": b for b in new_blobs})
    needed = {ref: have[ref] for ref in sorted(pack.all_blob_refs())}
    manifest = json.loads(members[MANIFEST_NAME])
    manifest.update(
        content_hash=pack.content_hash, pack_sha256=sha256_hex(pack_bytes), pack_size=len(pack_bytes),
        blobs=[{"ref": r, "sha256": parse_ref(r).digest, "size": len(b)} for r, b in needed.items()],
    )
    members.clear()
    members.update({MANIFEST_NAME: json.dumps(manifest).encode(), PACK_NAME: pack_bytes})
    members.update({f"blobs/{parse_ref(r).digest}": b for r, b in needed.items()})


NARROW = matrix_to_bytes(np.ones((1, 64), dtype=np.float32))


def _row_past_the_end(doc: dict) -> None:
    anchor = doc["anchor_sets"]["A_SELFIE"][0]
    anchor["embedding_ref"] = row_ref(anchor["embedding_ref"], 99)


def _centroid_too_narrow(doc: dict) -> None:
    doc["identity"]["centroid_ref"] = row_ref(f"sha256:{sha256_hex(NARROW)}", 0)


@pytest.mark.parametrize(
    ("edit", "why"),
    [(_row_past_the_end, "points at row"), (_centroid_too_narrow, "embedding_dim")],
    ids=["row-past-end", "width-mismatch"],
)
def test_embedding_refs_that_do_not_fit_their_matrix_are_refused_before_writing(
    archive: Path, target: Stores, tmp_path: Path, edit: Callable[[dict], None], why: str
) -> None:
    """The same row and width check publish makes runs on the archive's members, so a bad
    pack never gets as far as a version row or a stored blob."""
    members = _members(archive)
    _rewrite_pack(members, edit, new_blobs=(NARROW,))
    bad = _write(tmp_path / "bad.personapack", members)
    with pytest.raises(ArchiveIntegrityError, match=why):
        import_pack(target.meta, target.blobs, bad)
    _assert_untouched(target)


class _SiteOutage(LocalBlobStore):
    """Storing blobs fails as an S3 outage would and the database goes down with it (its
    folder moved away): two faults at one instant that nothing real produces on cue."""

    db: tuple[SqlMetadataStore, Path] | None = None

    def put(self, data: bytes) -> str:
        assert self.db is not None
        meta, db_dir = self.db
        db_dir.rename(db_dir.with_name("db-away"))
        meta.close()
        raise StoreUnavailableError("S3 at http://s3.internal unreachable: connection refused")


def test_import_failure_during_a_database_outage_reports_the_import_error(
    archive: Path, tmp_path: Path
) -> None:
    db_dir = tmp_path / "outage" / "db"
    meta = SqlMetadataStore.open(f"sqlite:///{db_dir / 'meta.db'}")
    blobs = _SiteOutage(tmp_path / "outage" / "blobs", SECRET, "http://testserver")
    blobs.db = (meta, db_dir)
    with pytest.raises(StoreUnavailableError, match=r"S3 at http://s3\.internal") as raised:
        import_pack(meta, blobs, archive)
    assert any("could not be marked failed" in note for note in raised.value.__notes__)
    meta.close()
