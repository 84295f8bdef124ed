"""Proof of erasure: look for what identified an erased subject in every store persona-core
writes, and report what survived.

Before erasing, :func:`fingerprint` records what identifies the subject (a persona, or some of
its versions) without keeping the data itself: the sha256 of every input and of every blob its
versions hold, the names of the objects they hold (step-cache entries, manifests), and short
probes (48 bytes): eight spread over each input and each contact sheet the caller passes, one
from each row of every embedding matrix or vector the versions hold. After the erasure,
:func:`verify_erased` looks for those in the :class:`Places`:

* the blob store: every key or file name, every object's sha256 (an exact copy under another
  name), and its bytes; the local folder is read file by file (stray temp files included), S3
  key by key (noncurrent versions too when the bucket keeps versions);
* the metadata database: SQLite's files as raw bytes (the database, its ``-wal``, ``-shm`` and
  ``-journal``, where deleted rows could linger), PostgreSQL's rows of every table as text;
* the Dagster instance folder (its SQLite storages, compute logs, IO-manager pickles);
* renderer cache folders;
* log files, for the person's data only (input digests, probes): a build's progress lines name
  the ids of the packs and blobs it wrote, and log lines are kept by the log store's own
  retention, outside an erasure's reach.

Each probe is searched for as raw bytes, as base64 (at each of the three alignments, as in a
``data:image/png;base64`` contact sheet in Dagster metadata) and, in PostgreSQL text, as hex
(``bytea``); digests as 64-character hex text. What another persona's versions also hold (the
same photo uploaded for two people, and the embedding rows in what those versions hold) is left
out of the fingerprint: erasure keeps it for them.
The cost is one pass per probe over each file, so a verification is a job, not a request.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from persona_core.embeddings import float32_from_npy
from persona_core.errors import InvalidInputError, PersonaCoreError
from persona_core.refs import parse_ref
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.local import LocalBlobStore
from persona_core.store.ref_index import BLOB, Held
from persona_core.version_inputs import UploadedInputs, inputs_of

if TYPE_CHECKING:
    from persona_core.store.s3 import S3BlobStore

__all__ = ["Places", "Probe", "SubjectFingerprint", "Survivor", "fingerprint", "verify_erased"]

PROBE_BYTES = 48
SPREAD = 8  # probes per input file and contact sheet
_DIGEST_RE = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_DIGEST_TEXT_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_NPY_MAGIC = b"\x93NUMPY"
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")
_PG_BATCH = 500
CHUNK_BYTES = 8 * 1024 * 1024
_OVERLAP = 256  # longer than any form searched for (a probe's hex is 96 characters)


@dataclass(frozen=True, slots=True)
class Probe:
    """A short, distinctive cut of the subject's bytes and the forms it is searched in."""

    label: str  # what it was cut from, e.g. "input sha256:1a2b3c4d5e6f" (no content)
    raw: bytes

    @property
    def base64_forms(self) -> tuple[bytes, ...]:
        # Inside a longer base64 text the probe's bytes start at one of three alignments.
        forms = []
        for offset in range(3):
            chunk = self.raw[offset:]
            forms.append(base64.b64encode(chunk[: len(chunk) - len(chunk) % 3]))
        return tuple(forms)

    def binary_forms(self) -> tuple[bytes, ...]:
        return (self.raw, *self.base64_forms)

    def text_forms(self) -> tuple[str, ...]:
        return (self.raw.hex(), *(f.decode() for f in self.base64_forms))


@dataclass(frozen=True, slots=True)
class SubjectFingerprint:
    """What identifies an erased subject, taken before the erasure (no photo, no matrix: only
    digests, object names and 48-byte probes)."""

    persona_id: str
    versions: tuple[int, ...]
    inputs: dict[str, str]  # sha256 hex of each input -> label
    refs: dict[str, str]  # sha256 hex of each held blob, and the packs' content hashes -> label
    object_names: dict[str, str]  # last segment of a held object's key -> label
    probes: tuple[Probe, ...]
    kept_shared: int = 0  # held by another persona's versions too: kept by erasure, not sought

    def summary(self) -> dict[str, int]:
        return {"inputs": len(self.inputs), "refs": len(self.refs), "objects": len(self.object_names),
                "probes": len(self.probes), "kept_shared": self.kept_shared}


@dataclass(frozen=True, slots=True)
class Survivor:
    """Something of the erased subject still found: in which store, where, and what matched."""

    store: str  # "blob store" | "database" | "dagster" | "renderer cache" | "log"
    location: str  # a file, an S3 key, a table
    matched: str  # the fingerprint's label, and how it matched

    def __str__(self) -> str:
        return f"{self.store}: {self.location}: {self.matched}"


@dataclass(frozen=True)
class Places:
    """Every place to search. Build it with :meth:`from_settings` for one persona-core home."""

    blobs: BlobStore | None = None
    database_url: str | None = None
    dagster_home: Path | None = None
    cache_dirs: Sequence[Path] = ()
    log_files: Sequence[Path] = ()  # files, or folders whose files are all read
    extra_dirs: Sequence[tuple[str, Path]] = ()  # (store name, folder): any other folder

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        blobs: BlobStore,
        *,
        cache_dirs: Iterable[Path] = (),
        log_files: Iterable[Path] = (),
    ) -> Places:
        """The stores of one home: its blob store, database, Dagster instance and its own pack
        cache, plus the renderer cache folders and log files named."""
        return cls(
            blobs=blobs,
            database_url=settings.resolved_database_url,
            dagster_home=settings.resolved_dagster_home,
            cache_dirs=(settings.resolved_cache_dir, *cache_dirs),
            log_files=tuple(log_files),
        )


def fingerprint(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    versions: Iterable[int] | None = None,
    *,
    contact_sheets: Iterable[bytes] = (),
) -> SubjectFingerprint:
    """What identifies ``persona_id`` (or its ``versions``), read from the stores before the
    erasure. ``contact_sheets``: the PNGs the builds showed (in Dagster metadata, not in the
    blob store)."""
    wanted = None if versions is None else set(versions)
    records = [r for r in meta.list_versions(persona_id) if wanted is None or r.version in wanted]
    found = _Collected(persona_id, tuple(r.version for r in records))
    for held in meta.refs.held_by(persona_id, found.versions):
        found.held(meta, blobs, held)
    found.leave_out_what_sharers_hold(meta, blobs)
    for record in records:
        if record.content_hash:
            found.refs.setdefault(record.content_hash, f"content hash of v{record.version}")
        try:
            inputs = inputs_of(record)
        except InvalidInputError:
            continue
        if isinstance(inputs, UploadedInputs):
            for f in inputs.files:
                found.input(blobs, f.sha256, f.ref)
    for n, sheet in enumerate(contact_sheets, 1):
        found.probe(f"contact sheet {n}", *_cuts(sheet))
    return SubjectFingerprint(
        persona_id, found.versions, found.inputs, found.refs, found.object_names,
        tuple(found.probes.values()), found.kept_shared,
    )


@dataclass
class _Collected:
    persona_id: str
    versions: tuple[int, ...]
    inputs: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    object_names: dict[str, str] = field(default_factory=dict)
    probes: dict[bytes, Probe] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)  # digests another persona's versions hold
    sharers: set[tuple[str, int]] = field(default_factory=set)  # versions holding any of those
    kept_shared: int = 0

    def held(self, meta: MetadataStore, blobs: BlobStore, held: Held) -> None:
        subject = {(self.persona_id, v) for v in self.versions}
        others = {holder for holder in meta.refs.holders(held) if holder not in subject}
        if others:
            self.sharers |= others
            self.kept_shared += 1
            if held.kind == BLOB:
                self.shared.add(parse_ref(held.ref).digest)
            return
        label = _held_label(held)
        if held.kind == BLOB:
            self.refs[parse_ref(held.ref).digest] = label
        else:
            self.object_names[held.ref.rsplit("/", 1)[-1]] = label
        try:
            data = blobs.get(held.ref) if held.kind == BLOB else blobs.get_object(held.ref)
        except PersonaCoreError:
            return
        if data.startswith(_NPY_MAGIC):
            for n, raw in _row_cuts(data):
                self.probe(f"embedding row {n} of {label}", raw)

    def input(self, blobs: BlobStore, sha256: str, ref: str) -> None:
        if sha256 in self.shared:
            return
        label = f"input sha256:{sha256[:12]}"
        self.inputs[sha256] = label
        with contextlib.suppress(PersonaCoreError):  # already gone: its digest is still sought
            self.probe(label, *_cuts(blobs.get(ref)))

    def leave_out_what_sharers_hold(self, meta: MetadataStore, blobs: BlobStore) -> None:
        """A photo two personas uploaded gives both the same embedding rows: the rows in what a
        sharing version holds (its matrices, its step-cache vectors) stay, so are not sought."""
        for persona_id, version in sorted(self.sharers):
            for held in meta.refs.held_by(persona_id, [version]):
                try:
                    data = blobs.get(held.ref) if held.kind == BLOB else blobs.get_object(held.ref)
                except PersonaCoreError:
                    continue
                if data.startswith(_NPY_MAGIC):
                    for _n, raw in _row_cuts(data):
                        self.probes.pop(raw, None)

    def probe(self, label: str, *cuts: bytes | None) -> None:
        for raw in cuts:
            if raw is not None:
                self.probes.setdefault(raw, Probe(label, raw))


def verify_erased(subject: SubjectFingerprint, places: Places) -> list[Survivor]:
    """Every survivor of ``subject`` in ``places``; an empty list is the proof."""
    scan = _Scanner(subject)
    if places.blobs is not None:
        scan.blob_store(places.blobs)
    if places.database_url:
        scan.database(places.database_url)
    if places.dagster_home is not None:
        scan.folder("dagster", places.dagster_home)
    for folder in places.cache_dirs:
        scan.folder("renderer cache", folder)
    for path in places.log_files:
        scan.folder("log", path, refs=False)
    for store, folder in places.extra_dirs:
        scan.folder(store, folder)
    return scan.found


class _Scanner:
    def __init__(self, subject: SubjectFingerprint) -> None:
        self.subject = subject
        self.found: list[Survivor] = []
        self._seen: set[tuple[str, str, str]] = set()
        self._digests = {**subject.refs, **subject.inputs}
        self._binary = [(p.label, form) for p in subject.probes for form in p.binary_forms()]
        self._text = [(p.label, form) for p in subject.probes for form in p.text_forms()]
        # Manifests written before versions recorded what they hold are found by name.
        self._manifests = {f"-{subject.persona_id}-v{v}.json": v for v in subject.versions}

    def report(self, store: str, location: str, matched: str) -> None:
        key = (store, location, matched)
        if key not in self._seen:
            self._seen.add(key)
            self.found.append(Survivor(store, location, matched))

    # -- what a name, a file's bytes or a text holds ---------------------------------------

    def name(self, store: str, location: str) -> None:
        for token in _DIGEST_TEXT_RE.findall(location):
            if token in self._digests:
                self.report(store, location, f"named by {self._digests[token]}")
        last = location.rstrip("/").rsplit("/", 1)[-1]
        if last in self.subject.object_names:
            self.report(store, location, f"named as {self.subject.object_names[last]}")
        if "manifests/" in location:
            for suffix, version in self._manifests.items():
                if last.endswith(suffix):
                    self.report(store, location, f"the upload manifest of v{version}")

    def content(self, store: str, location: str, chunks: Iterable[bytes], *, refs: bool = True) -> None:
        """Look through one file's or object's bytes, given in overlapping chunks. ``refs=False``:
        for the person's data only (inputs, probes), not for the ids of their packs and blobs."""
        digests = self._digests if refs else self.subject.inputs
        whole = hashlib.sha256()
        for chunk, fresh in _with_tail(chunks):
            whole.update(fresh)
            for match in _DIGEST_RE.finditer(chunk):
                token = match.group().decode()
                if token in digests:
                    self.report(store, location, f"mentions {digests[token]}")
            for label, form in self._binary:
                if form in chunk:
                    self.report(store, location, f"holds bytes of {label}")
        digest = whole.hexdigest()
        if digest in self._digests:
            self.report(store, location, f"a copy of {self._digests[digest]}")

    def text(self, store: str, location: str, text: str) -> None:
        for token in _DIGEST_TEXT_RE.findall(text):
            if token in self._digests:
                self.report(store, location, f"mentions {self._digests[token]}")
        for label, form in self._text:
            if form in text:
                self.report(store, location, f"holds bytes of {label}")

    # -- places -----------------------------------------------------------------------------

    def folder(self, store: str, root: Path, *, refs: bool = True) -> None:
        for path in _files(root):
            if refs:
                self.name(store, path.as_posix())
            self.content(store, str(path), _read(path), refs=refs)

    def blob_store(self, blobs: BlobStore) -> None:
        # boto3 loads with the S3 store's module: only a process that reads S3 pays for it.
        from persona_core.store.s3 import S3BlobStore  # noqa: PLC0415

        if isinstance(blobs, LocalBlobStore):
            self.folder("blob store", blobs.root)
        elif isinstance(blobs, S3BlobStore):
            self._s3(blobs)
        else:
            for item in blobs.iter_blobs():
                self.name("blob store", item.name)
                self.content("blob store", item.name, [blobs.get(item.name)])
            for item in blobs.iter_objects():
                self.name("blob store", item.name)
                self.content("blob store", item.name, [blobs.get_object(item.name)])

    def _s3(self, blobs: S3BlobStore) -> None:
        s3, bucket = blobs.client, blobs.bucket
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=blobs.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                self.name("blob store", key)
                self.content("blob store", key, _body(s3.get_object(Bucket=bucket, Key=key)["Body"]))
        status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
        if status not in ("Enabled", "Suspended"):
            return
        # A delete in a versioned bucket only hides the bytes behind a delete marker.
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=blobs.prefix):
            for obj in page.get("Versions", []):
                if obj.get("IsLatest"):
                    continue
                where = f"{obj['Key']} (noncurrent version {obj['VersionId']})"
                self.name("blob store", where)
                body = s3.get_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])["Body"]
                self.content("blob store", where, _body(body))

    def database(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                for suffix in _SQLITE_COMPANIONS:
                    path = Path(parsed.database + suffix)
                    self.content("database", str(path), _read(path))
            return
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                for schema, table in _pg_tables(conn):
                    self._pg_table(conn, schema, table)
        finally:
            engine.dispose()

    def _pg_table(self, conn: sa.Connection, schema: str, table: str) -> None:
        location = f"{schema}.{table}"
        quoted = f'"{schema.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}"'
        rows = conn.execution_options(stream_results=True, yield_per=_PG_BATCH).execute(
            sa.text(f"SELECT t::text FROM {quoted} AS t")  # noqa: S608 - names from the catalog, quoted
        )
        for batch in rows.partitions(_PG_BATCH):
            self.text("database", location, "\n".join(row[0] for row in batch))


def _pg_tables(conn: sa.Connection) -> list[tuple[str, str]]:
    query = sa.text(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY 1, 2"
    )
    return [(row[0], row[1]) for row in conn.execute(query)]


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            yield Path(dirpath, name)


def _read(path: Path) -> Iterator[bytes]:
    """A regular file's bytes in chunks (read, not mapped: a database file that shrinks while
    it is read must not crash the verifier); nothing for a missing or special file."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                yield chunk
    except FileNotFoundError:
        return


def _body(body: Any) -> Iterator[bytes]:
    """An S3 object's body in chunks."""
    while chunk := body.read(CHUNK_BYTES):
        yield chunk


def _with_tail(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(what to search, the new bytes in it): each chunk with the tail of the one before, so
    nothing that straddles two chunks is missed."""
    tail = b""
    for chunk in chunks:
        yield tail + chunk, chunk
        tail = (tail + chunk)[-_OVERLAP:]


def _row_cuts(data: bytes) -> Iterator[tuple[int, bytes]]:
    """A probe from every row of a float32 ``.npy`` (a matrix, or a step cache's vector)."""
    try:
        array = float32_from_npy(data)
    except InvalidInputError:
        return
    if array.ndim == 0 or array.size == 0:
        return
    for n, row in enumerate(array.reshape(-1, array.shape[-1])):
        raw = _cut(row.tobytes(), at_start=True)
        if raw is not None:
            yield n, raw


def _cut(data: bytes, *, at_start: bool = False) -> bytes | None:
    """A distinctive ``PROBE_BYTES`` window of ``data`` (from its middle, or its start for a
    matrix row), skipping runs of silence or padding; None when nothing is distinctive."""
    starts = (0, len(data) // 4) if at_start else (len(data) // 2, len(data) // 4, 3 * len(data) // 4)
    return next((w for w in (_window(data, start) for start in starts) if w is not None), None)


def _cuts(data: bytes, count: int = SPREAD) -> list[bytes]:
    """Up to ``count`` distinctive windows spread over ``data``: a long value is stored across
    database pages, and a probe that straddles a page boundary is not found there, the others are."""
    step = max(len(data) // (count + 1), 1)
    windows = (_window(data, step * n) for n in range(1, count + 1))
    return list(dict.fromkeys(w for w in windows if w is not None))


def _window(data: bytes, start: int) -> bytes | None:
    window = data[start : start + PROBE_BYTES]
    return window if len(window) == PROBE_BYTES and len(set(window)) >= PROBE_BYTES // 2 else None


def _held_label(held: Held) -> str:
    return f"held blob sha256:{parse_ref(held.ref).digest[:12]}" if held.kind == BLOB else (
        f"held object {_short_key(held.ref)}"
    )


def _short_key(key: str) -> str:
    head, _, last = key.rpartition("/")
    return f"{head}/{last[:12]}" if head else last[:12]
