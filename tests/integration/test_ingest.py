"""Upload intake on every store combination: inputs stored, version pending, manifest
written; a rejected request leaves no blob, object or row behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from store_helpers import stored_keys

from persona_core.errors import (
    BlobNotFoundError,
    InvalidInputError,
    InvalidManifestError,
    InvalidNameError,
    PersonaNotFoundError,
    StoreUnavailableError,
)
from persona_core.ingest import MANIFEST_PREFIX, manifest_key, read_manifest, submit_version
from persona_core.refs import ref_for
from persona_core.store.base import BlobStore, VersionStatus
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore

PHOTO = b"\xff\xd8\xff fake jpeg bytes"
CLIP = b"RIFF fake wav bytes"


@pytest.fixture
def alice(metadata_store: SqlMetadataStore) -> str:
    metadata_store.create_persona("alice", {})
    return "alice"


def test_submit_stores_inputs_then_version_then_manifest(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, alice: str
) -> None:
    behavior = {"emotion_ranges": {"happy": {"min": 0, "max": 0.5}}, "allowed_gestures": ["nod"]}
    rec = submit_version(
        metadata_store,
        blob_store,
        alice,
        [("front.jpg", PHOTO, "image"), ("hello.wav", CLIP, "voice")],
        behavior=behavior,
        voice={"provider_voice_id": "v-123"},
        camera_modes={"front.jpg": "A_SELFIE"},
    )
    assert (rec.version, rec.status) == (1, VersionStatus.PENDING)
    files = rec.inputs["files"]
    assert [(f["name"], f["kind"], f["camera_mode"], f["size"]) for f in files] == [
        ("front.jpg", "image", "A_SELFIE", len(PHOTO)),
        ("hello.wav", "voice", None, len(CLIP)),
    ]
    assert blob_store.get(files[0]["ref"]) == PHOTO
    assert files[1]["ref"] == ref_for(CLIP)
    assert rec.inputs["behavior_policy"]["allowed_gestures"] == ["nod"]
    assert rec.inputs["voice"]["provider_voice_id"] == "v-123"
    assert metadata_store.get_version(alice, 1).inputs == rec.inputs

    (key,) = blob_store.list_objects(MANIFEST_PREFIX)
    assert key.endswith("-alice-v1.json")
    manifest = read_manifest(blob_store, key)
    assert (manifest.persona_id, manifest.version) == (alice, 1)
    assert manifest.inputs.model_dump(mode="json") == rec.inputs

    submit_version(metadata_store, blob_store, alice, [("side.jpg", PHOTO + b"2", "image")])
    keys = blob_store.list_objects(MANIFEST_PREFIX)
    assert [k.rsplit("-", 1)[1] for k in keys] == ["v1.json", "v2.json"]  # time order = version order


def _rejected(
    meta: SqlMetadataStore, blobs: BlobStore, persona: str, error: type[Exception], **kw: object
) -> None:
    before = stored_keys(blobs)
    files = kw.pop("files", [("ok.jpg", PHOTO, "image")])
    with pytest.raises(error):
        submit_version(meta, blobs, persona, files, **kw)  # type: ignore[arg-type]
    assert stored_keys(blobs) == before
    if persona == "alice":
        assert meta.list_versions("alice") == []


def test_unknown_persona_writes_nothing(metadata_store: SqlMetadataStore, blob_store: BlobStore) -> None:
    _rejected(metadata_store, blob_store, "nobody", PersonaNotFoundError)


BAD_NAMES = ["../x", "/etc/passwd", "a/b", "a\x00b", "..", "", ".bashrc", "x" * 200]
BAD_REQUESTS: list[dict[str, object]] = [
    {"files": []},
    {"files": [("a.jpg", b"", "image")]},
    {"files": [("a.exe", b"x", "binary")]},
    {"files": [("a.jpg", b"x", "image"), ("a.jpg", b"y", "image")]},
    {"camera_modes": {"ok.jpg": "D_DRONE"}},
    {"camera_modes": {"other.jpg": "A_SELFIE"}},
    {"behavior": {"emotion_ranges": {"happy": {"min": 0.9, "max": 0.1}}, "allowed_gestures": []}},
    {"voice": {"provider_voice_id": "v", "unknown_field": 1}},
]


def test_malicious_file_names_write_nothing(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, alice: str
) -> None:
    for name in BAD_NAMES:
        # The good file comes first: validation must finish before the first blob is written.
        files = [("ok.jpg", PHOTO, "image"), (name, b"payload", "image")]
        _rejected(metadata_store, blob_store, alice, InvalidNameError, files=files)


def test_invalid_requests_write_nothing(
    metadata_store: SqlMetadataStore, blob_store: BlobStore, alice: str
) -> None:
    for kwargs in BAD_REQUESTS:
        _rejected(metadata_store, blob_store, alice, InvalidInputError, **dict(kwargs))


def test_malformed_manifests_raise_a_typed_error(blob_store: BlobStore) -> None:
    key = manifest_key("alice", 1, now_ns=1)
    good_file = {
        "name": "a.jpg",
        "ref": ref_for(b"a"),
        "sha256": ref_for(b"a")[7:],
        "kind": "image",
        "size": 1,
    }
    cases = [
        b"not json",
        b"[]",
        json.dumps({"persona_id": "alice", "version": 1}).encode(),
        json.dumps({"persona_id": "alice", "version": 1, "inputs": {"files": []}}).encode(),
        json.dumps(
            {"persona_id": "alice", "version": 1, "inputs": {"files": [{**good_file, "ref": "../etc"}]}}
        ).encode(),
        json.dumps({"persona_id": "bob", "version": 1, "inputs": {"files": [good_file]}}).encode(),
    ]
    for body in cases:
        blob_store.put_object(key, body)
        with pytest.raises(InvalidManifestError):
            read_manifest(blob_store, key)
    blob_store.put_object(
        key, json.dumps({"persona_id": "alice", "version": 1, "inputs": {"files": [good_file]}}).encode()
    )
    assert read_manifest(blob_store, key).inputs.files[0].name == "a.jpg"
    with pytest.raises(InvalidManifestError):
        read_manifest(blob_store, "manifests/whatever.json")
    with pytest.raises(BlobNotFoundError):
        read_manifest(blob_store, manifest_key("alice", 2, now_ns=2))


def test_manifest_write_failure_marks_the_version_failed(
    metadata_store: SqlMetadataStore, local_blob_store: LocalBlobStore, alice: str
) -> None:
    """No manifest means no build will ever start: the version says so instead of staying pending."""
    (local_blob_store.root / "objects" / "manifests").write_bytes(b"a file where the folder goes")
    with pytest.raises(OSError, match="manifests"):
        submit_version(metadata_store, local_blob_store, alice, [("front.jpg", PHOTO, "image")])
    record = metadata_store.get_version(alice, 1)
    assert record.status == VersionStatus.FAILED
    assert record.reasons[0].startswith("manifest not written: ")


class _SiteOutage(LocalBlobStore):
    """Writing the manifest fails as an S3 outage would, and the database goes down with it
    (its folder moved away): two faults at one instant that nothing real produces on cue."""

    db: tuple[SqlMetadataStore, Path] | None = None

    def put_object(self, key: str, data: bytes) -> None:
        assert self.db is not None
        meta, db_dir = self.db
        db_dir.rename(db_dir.with_name("db-away"))
        meta.close()
        raise StoreUnavailableError("S3 at http://s3.internal unreachable: connection refused")


def test_manifest_failure_during_a_database_outage_reports_the_manifest_error(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    meta = SqlMetadataStore.open(f"sqlite:///{db_dir / 'meta.db'}")
    meta.create_persona("alice", {})
    blobs = _SiteOutage(tmp_path / "blobs", b"secret", "http://testserver")
    blobs.db = (meta, db_dir)
    with pytest.raises(StoreUnavailableError, match=r"S3 at http://s3\.internal unreachable") as raised:
        submit_version(meta, blobs, "alice", [("front.jpg", PHOTO, "image")])
    assert any("could not be marked failed" in note for note in raised.value.__notes__)
    meta.close()
