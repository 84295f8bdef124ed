"""The erasure verifier finds what it must, wherever it hides: a copy of a photo under another
key, a contact sheet as base64 inside a JSON log line (at any alignment), an embedding vector
inside another file, a deleted row left in SQLite's write-ahead log; it leaves out what another
persona holds too, and finds nothing once an erasure is done."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from persona_cli.main import app
from persona_core.embeddings import float32_from_npy, float32_to_npy
from persona_core.erasure import erase
from persona_core.erasure_verify import Places, SubjectFingerprint, fingerprint, verify_erased
from persona_core.ingest import submit_version
from persona_core.publish import publish_pack
from persona_core.refs import sha256_hex
from persona_core.runtime import PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.ref_index import OBJECT, Held
from persona_core.testing import make_pack

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
PID, OTHER = "ada", "bea"
PHOTOS = ["obama.jpg", "obama1.jpg"]
SHEET = (FACES / "obama2.jpg").read_bytes()  # stands in for a contact sheet PNG


class Home:
    def __init__(self, root: Path) -> None:
        self.settings = Settings(home=root)
        self.meta: MetadataStore = open_metadata_store(self.settings)
        self.blobs: BlobStore = open_blob_store(self.settings)
        self.renderer = root / "renderer"
        self.log = root / "log.jsonl"
        self.log.write_text("")

    def places(self) -> Places:
        return Places.from_settings(
            self.settings, self.blobs, cache_dirs=[self.renderer], log_files=[self.log]
        )

    def subject(self) -> SubjectFingerprint:
        return fingerprint(self.meta, self.blobs, PID, contact_sheets=[SHEET])


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """Every CLI invocation configures root logging; put it back for the tests that follow."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    """ada: v1 uploaded (two photos), v2 published with embedding matrices, cached by a
    renderer; bea: uploaded the same first photo."""
    h = Home(tmp_path / "home")
    h.meta.create_persona(PID, {})
    files = [(n, (FACES / n).read_bytes(), "image") for n in PHOTOS]
    submit_version(h.meta, h.blobs, PID, files)
    h.meta.create_version(PID, {"files": []})
    publish_pack(h.meta, h.blobs, make_pack(h.blobs, PID, 2, n_anchors=4, seed=2))
    PackCache(h.renderer, StorePackSource(h.meta, h.blobs)).load(PID, 2)
    h.meta.create_persona(OTHER, {})
    submit_version(h.meta, h.blobs, OTHER, files[:1])
    yield h
    h.meta.close()


def _erase(home: Home) -> None:
    erase(home.meta, home.blobs, PID, actor="test", reason="asked to be forgotten")
    PackCache(home.renderer).purge(PID)


def test_before_erasure_it_finds_the_person_and_after_it_finds_nothing(home: Home) -> None:
    """Before: blob store, database and renderer cache all hold the person. After: nothing,
    while the photo the other persona uploaded too stays (and was never sought)."""
    subject = home.subject()
    assert subject.kept_shared == 1
    assert sha256_hex((FACES / PHOTOS[0]).read_bytes()) not in subject.inputs
    before = verify_erased(subject, home.places())
    assert {s.store for s in before} == {"blob store", "database", "renderer cache"}
    _erase(home)
    assert verify_erased(subject, home.places()) == []
    shared = home.meta.list_versions(OTHER)[0].inputs["files"][0]
    assert sha256_hex(home.blobs.get(shared["ref"])) == shared["sha256"]


def test_a_planted_copy_of_a_photo_is_found_under_any_key(home: Home) -> None:
    """An exact copy under a key nothing links to the person, and a copy inside a bigger file."""
    subject = home.subject()
    _erase(home)
    photo = (FACES / PHOTOS[1]).read_bytes()
    home.blobs.put_object("misc/copy.bin", photo)
    home.blobs.put(b"header" + photo + b"trailer")
    found = verify_erased(subject, home.places())
    label = f"input sha256:{sha256_hex(photo)[:12]}"
    assert {(s.location.rsplit("/", 1)[-1], s.matched) for s in found if s.location.endswith("copy.bin")} == {
        ("copy.bin", f"a copy of {label}"), ("copy.bin", f"holds bytes of {label}")
    }
    assert any(s.matched == f"holds bytes of {label}" and not s.location.endswith("copy.bin") for s in found)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_a_contact_sheet_as_base64_in_a_json_log_line_is_found(home: Home, pad: int) -> None:
    """A data: URI in a log line, whatever its offset in the base64 text."""
    subject = home.subject()
    _erase(home)
    uri = "data:image/png;base64," + base64.b64encode(b"x" * pad + SHEET).decode()
    home.log.write_text(json.dumps({"msg": "materialized", "contact_sheet": uri}) + "\n")
    found = verify_erased(subject, home.places())
    assert [(s.store, s.matched) for s in found] == [("log", "holds bytes of contact sheet 1")]


def test_an_embedding_vector_copied_elsewhere_is_found(home: Home) -> None:
    """One row of the pack's identity matrix, saved as its own .npy under an unrelated key."""
    subject = home.subject()
    published = home.meta.get_published(PID, 2)
    matrix = next(float32_from_npy(home.blobs.get(r)) for r in published.blob_refs
                  if home.blobs.get(r).startswith(b"\x93NUMPY"))
    _erase(home)
    buf = Path(home.settings.home / "vector.npy")
    np.save(buf, matrix[1])
    home.blobs.put_object("misc/vector.npy", buf.read_bytes())
    found = verify_erased(subject, home.places())
    assert found
    assert all(s.location.endswith("misc/vector.npy") and "embedding row 1 of" in s.matched for s in found)


def test_embedding_rows_another_persona_holds_too_are_left_out(home: Home) -> None:
    """bea uploaded the same photo and her build holds the vector it gives, which is also a row
    of ada's matrix: erasure keeps bea's copy, and the verifier does not call it a survivor."""
    published = home.meta.get_published(PID, 2)
    matrix = next(float32_from_npy(home.blobs.get(r)) for r in published.blob_refs
                  if home.blobs.get(r).startswith(b"\x93NUMPY"))
    key = "cache/face_embeddings/" + "ab" * 32
    home.meta.refs.record(OTHER, 1, [Held(OBJECT, key)])
    home.blobs.put_object(key, float32_to_npy(matrix[1]))
    subject = home.subject()
    _erase(home)
    assert verify_erased(subject, home.places()) == []
    assert float32_from_npy(home.blobs.get_object(key)).tolist() == matrix[1].tolist()


def test_text_left_in_the_sqlite_files_is_found(home: Home) -> None:
    """The database's files are read raw (the database and its -wal): a row that still names
    an input is a survivor, wherever SQLite has put it for now."""
    subject = home.subject()
    _erase(home)
    digest = next(iter(subject.inputs))
    db = Path(home.settings.resolved_database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scratch (note TEXT)")
        conn.execute("INSERT INTO scratch VALUES (?)", (f"file sha256:{digest}",))
    found = verify_erased(subject, home.places())
    assert {(s.store, s.matched) for s in found} == {("database", f"mentions {subject.inputs[digest]}")}
    assert {Path(s.location).name for s in found} <= {db.name, f"{db.name}-wal"}


def _cli(home: Home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--home", str(home.settings.home), "erase", PID, "--reason", "asked",
                                      "--verify", "--verify-cache-dir", str(home.renderer),
                                      "--verify-log", str(home.log), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("_restore_logging")
def test_erase_verify_through_the_cli(home: Home) -> None:
    """`persona-core erase --verify` notes the subject first, erases, searches every store and
    says so; a renderer cache named with --verify-cache-dir is searched too (the renderer must
    purge it: until then it is a survivor, exit 4)."""
    code, stdout, stderr = _cli(home, "--json")
    assert code == 4, stderr
    doc = json.loads(stdout)
    assert doc["state"] == "erased"
    assert doc["verify"]["verified"] is False
    assert {s["store"] for s in doc["verify"]["survivors"]} == {"renderer cache"}

    PackCache(home.renderer).purge(PID)
    code, stdout, stderr = _cli(home)
    assert code == 0  # already erased: reported, and nothing could be noted before it
    assert "was already erased" in stdout
    assert "not verified: its erasure had already begun" in stderr


@pytest.mark.usefixtures("_restore_logging")
def test_erase_verify_through_the_cli_finds_a_copy_nobody_tracked(home: Home) -> None:
    """A photo copied under a key no version holds survives the erasure: --verify reports it."""
    photo = (FACES / PHOTOS[1]).read_bytes()
    home.blobs.put_object("exports/by-hand.jpg", photo)
    PackCache(home.renderer).purge(PID)  # the renderer has forgotten already
    code, stdout, stderr = _cli(home)
    assert code == 4
    where = f"{home.blobs.root}/objects/exports/by-hand.jpg"
    assert f"survivor: blob store: {where}: a copy of input sha256:{sha256_hex(photo)[:12]}" in stdout
    assert "not erased everywhere: 2 survivor(s)" in stderr  # a copy, and its bytes
