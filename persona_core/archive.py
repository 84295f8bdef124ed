"""Portable ``.personapack`` archives: move one published pack between deployments.

An archive is a gzip'd tar with exactly these members, written in this order::

    manifest.json      persona id, version, content hash, pack sha256, every blob's sha256 + size
    pack.json          the pack's stored bytes (canonical JSON, content hash inside)
    blobs/<sha256>     every blob the pack references (row refs collapsed to their matrix)

Export is deterministic (fixed member order, mtimes and owners), so the same pack always
gives the same archive bytes. Import trusts nothing: it checks member names and types (no
paths, links or devices), sizes, the manifest, every blob's sha256 and size, the pack's
sha256, schema and content hash, and that every embedding row ref names a real row of the
declared width, all in memory *before* writing anything. Any failure is an
:class:`ArchiveIntegrityError` and leaves both stores untouched.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from persona_core.errors import (
    IntegrityError,
    InvalidInputError,
    PackValidationError,
    PersonaNotFoundError,
    VersionNotFoundError,
)
from persona_core.fsio import atomic_writer
from persona_core.pack import PersonaPack
from persona_core.publish import check_embedding_rows, publish_pack
from persona_core.refs import parse_ref, sha256_hex
from persona_core.schema import validate_pack_document
from persona_core.store.base import BlobStore, MetadataStore, VersionRecord, VersionStatus
from persona_core.store.tracked import TrackedBlobStore
from persona_core.version_inputs import ImportedFrom, ImportedInputs
from persona_core.versions import fail_version_on_error

FORMAT = "personapack"
FORMAT_VERSION = 1
SUFFIX = ".personapack"
MANIFEST_NAME = "manifest.json"
PACK_NAME = "pack.json"
_BLOB_NAME_RE = re.compile(r"^blobs/([0-9a-f]{64})$")

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBERS = 100_000


class ArchiveIntegrityError(IntegrityError):
    """A .personapack archive is malformed, unsafe or tampered with."""

    code = "archive_integrity"


Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlobEntry(_Frozen):
    ref: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
    sha256: Sha256Hex
    size: Annotated[int, Field(ge=0)]


class Manifest(_Frozen):
    format: str
    format_version: int
    persona_id: str
    version: Annotated[int, Field(ge=1)]
    content_hash: Sha256Hex
    pack_sha256: Sha256Hex
    pack_size: Annotated[int, Field(ge=0)]
    persona_metadata: dict[str, Any] = {}
    blobs: list[BlobEntry]


@dataclass(frozen=True, slots=True)
class VerifiedArchive:
    """An archive whose every byte was checked; holds the bytes to import."""

    manifest: Manifest
    pack: PersonaPack
    pack_bytes: bytes
    blobs: dict[str, bytes]  # ref -> bytes

    @property
    def total_bytes(self) -> int:
        return len(self.pack_bytes) + sum(len(b) for b in self.blobs.values())


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    persona_id: str
    version: int
    content_hash: str
    blob_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    persona_id: str
    version: int
    content_hash: str
    pack_ref: str
    blob_count: int
    created_persona: bool
    already_present: bool  # the same content was already published there: nothing written


# -- export -------------------------------------------------------------------------------


def export_pack(
    meta: MetadataStore,
    blobs: BlobStore,
    persona_id: str,
    version: int | None,
    out_path: Path | str,
) -> ExportResult:
    """Write a published pack and all its blobs to ``out_path`` (``version=None`` = newest).

    Blobs are read through the store, which re-verifies each one's hash on the way out.
    The file appears atomically: a crash leaves no half-written archive at ``out_path``.
    """
    record = meta.get_published(persona_id, version)
    pack_bytes = blobs.get(record.pack_ref)
    pack = _parse_pack(pack_bytes)
    try:
        persona_metadata = meta.get_persona(persona_id).metadata
    except PersonaNotFoundError:
        persona_metadata = {}
    refs = sorted(pack.all_blob_refs())
    payload = [(ref, blobs.get(ref)) for ref in refs]
    manifest = Manifest(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        persona_id=pack.persona_id,
        version=record.version,
        content_hash=record.content_hash,
        pack_sha256=sha256_hex(pack_bytes),
        pack_size=len(pack_bytes),
        persona_metadata=persona_metadata,
        blobs=[BlobEntry(ref=ref, sha256=parse_ref(ref).digest, size=len(data)) for ref, data in payload],
    )
    manifest_bytes = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True).encode()

    out = Path(out_path)
    # mtime=0 in the gzip header and every tar member: byte-identical re-exports.
    with (
        atomic_writer(out, suffix=SUFFIX) as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add(tar, MANIFEST_NAME, manifest_bytes)
        _add(tar, PACK_NAME, pack_bytes)
        for ref, data in payload:
            _add(tar, f"blobs/{parse_ref(ref).digest}", data)
    return ExportResult(
        path=out,
        persona_id=pack.persona_id,
        version=record.version,
        content_hash=record.content_hash,
        blob_count=len(payload),
        size_bytes=out.stat().st_size,
    )


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


# -- verify ------------------------------------------------------------------------------


def verify_archive(
    path: Path | str,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> VerifiedArchive:
    """Read and check every member of an archive; raise ArchiveIntegrityError on any doubt.

    Raises InvalidInputError when ``path`` is not a readable file at all.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"{p} is not a file")
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(p, mode="r:*") as tar:
            for count, info in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveIntegrityError(f"archive has more than {MAX_MEMBERS} members")
                name = _check_member(info, members, max_member_bytes)
                total += info.size
                if total > max_total_bytes:
                    raise ArchiveIntegrityError(f"archive contents exceed {max_total_bytes} bytes")
                fh = tar.extractfile(info)
                if fh is None:  # pragma: no cover - regular files always have data
                    raise ArchiveIntegrityError(f"member {name!r} has no data")
                data = fh.read(info.size + 1)
                if len(data) != info.size:
                    raise ArchiveIntegrityError(f"member {name!r} is truncated or longer than declared")
                members[name] = data
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ArchiveIntegrityError(f"{p.name} is not a readable .personapack archive: {exc}") from None
    return _verify_members(members)


def _check_member(info: tarfile.TarInfo, seen: dict[str, bytes], max_member_bytes: int) -> str:
    name = info.name
    # Only the three exact shapes are allowed, which also rules out '..', absolute paths,
    # backslashes and NUL; links, devices and directories are refused by type.
    if name not in (MANIFEST_NAME, PACK_NAME) and not _BLOB_NAME_RE.fullmatch(name):
        raise ArchiveIntegrityError(f"unexpected member name {name!r} (possible path traversal)")
    if not info.isreg():
        raise ArchiveIntegrityError(f"member {name!r} is not a regular file (links are not allowed)")
    if name in seen:
        raise ArchiveIntegrityError(f"member {name!r} appears twice")
    limit = MAX_MANIFEST_BYTES if name == MANIFEST_NAME else max_member_bytes
    if info.size > limit:
        raise ArchiveIntegrityError(f"member {name!r} is {info.size} bytes (limit {limit})")
    return name


def _verify_members(members: dict[str, bytes]) -> VerifiedArchive:
    if MANIFEST_NAME not in members or PACK_NAME not in members:
        raise ArchiveIntegrityError(f"archive must contain {MANIFEST_NAME} and {PACK_NAME}")
    try:
        manifest = Manifest.model_validate_json(members.pop(MANIFEST_NAME))
    except ValidationError as exc:
        raise ArchiveIntegrityError(f"manifest is invalid: {_first_error(exc)}") from None
    if manifest.format != FORMAT or manifest.format_version != FORMAT_VERSION:
        raise ArchiveIntegrityError(
            f"unsupported archive format {manifest.format!r} v{manifest.format_version} "
            f"(this build reads {FORMAT} v{FORMAT_VERSION})"
        )

    pack_bytes = members.pop(PACK_NAME)
    if len(pack_bytes) != manifest.pack_size or sha256_hex(pack_bytes) != manifest.pack_sha256:
        raise ArchiveIntegrityError("pack.json does not match the sha256/size in the manifest")
    pack = _parse_pack(pack_bytes)
    if pack.persona_id != manifest.persona_id or pack.version != manifest.version:
        raise ArchiveIntegrityError(
            f"pack is {pack.persona_id} v{pack.version} but the manifest says "
            f"{manifest.persona_id} v{manifest.version}"
        )
    recomputed = pack.compute_content_hash()
    if pack.content_hash != recomputed or manifest.content_hash != recomputed:
        raise ArchiveIntegrityError(
            f"content hash mismatch: pack says {pack.content_hash}, manifest says "
            f"{manifest.content_hash}, the content hashes to {recomputed}"
        )

    listed = {e.ref: e for e in manifest.blobs}
    if len(listed) != len(manifest.blobs):
        raise ArchiveIntegrityError("manifest lists a blob twice")
    needed = pack.all_blob_refs()
    if set(listed) != needed:
        missing, extra = sorted(needed - set(listed)), sorted(set(listed) - needed)
        raise ArchiveIntegrityError(
            f"manifest blobs differ from the pack's refs: missing {missing}, extra {extra}"
        )
    present = {f"sha256:{name.removeprefix('blobs/')}": data for name, data in members.items()}
    if set(present) != needed:
        missing, extra = sorted(needed - set(present)), sorted(set(present) - needed)
        raise ArchiveIntegrityError(
            f"archive blobs differ from the pack's refs: missing {missing}, extra {extra}"
        )
    for ref, data in present.items():
        entry = listed[ref]
        intact = entry.sha256 == parse_ref(ref).digest and len(data) == entry.size
        if not intact or sha256_hex(data) != entry.sha256:
            raise ArchiveIntegrityError(f"blob {ref} is corrupt: its bytes do not match its sha256/size")
    try:
        check_embedding_rows(pack, present.__getitem__)
    except PackValidationError as exc:
        raise ArchiveIntegrityError(f"embedding refs do not fit their matrices: {exc}") from None
    return VerifiedArchive(manifest=manifest, pack=pack, pack_bytes=pack_bytes, blobs=present)


def _parse_pack(pack_bytes: bytes) -> PersonaPack:
    try:
        doc = json.loads(pack_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveIntegrityError(f"pack.json is not JSON: {exc}") from None
    try:
        validate_pack_document(doc)
        return PersonaPack.model_validate(doc)
    except PackValidationError as exc:
        raise ArchiveIntegrityError(f"pack.json fails the pack schema: {exc}") from None
    except ValidationError as exc:
        raise ArchiveIntegrityError(f"pack.json is not a valid pack: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"


# -- import ------------------------------------------------------------------------------


def import_pack(
    meta: MetadataStore,
    blobs: BlobStore,
    path: Path | str,
    *,
    renumber: bool = False,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> ImportResult:
    """Verify an archive completely, then publish its pack into these stores.

    The persona is created (with the archived metadata) when missing. The pack keeps its
    version number when that number is the persona's next one here; ``renumber=True``
    publishes it as the next number instead (``version`` is not part of the content hash,
    so the content hash is unchanged). Importing content already published here under the
    same version is a no-op. Raises ArchiveIntegrityError (nothing written) for a bad
    archive, InvalidInputError when the version cannot be kept.
    """
    verified = verify_archive(path, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes)
    pack = verified.pack
    persona_id = pack.persona_id

    # Decide everything that can fail before the first write.
    created_persona = False
    try:
        meta.get_persona(persona_id)
        versions = meta.list_versions(persona_id)
    except PersonaNotFoundError:
        created_persona = True
        versions = []
    same = [v for v in versions if v.version == pack.version]
    if same:
        existing = same[0]
        if existing.status == VersionStatus.PUBLISHED and existing.content_hash == pack.content_hash:
            return _result(existing, verified, created_persona=False, already_present=True)
        if not renumber:
            raise InvalidInputError(
                f"{persona_id} v{pack.version} already exists here ({existing.status.value}); "
                "import with renumber to publish it as a new version"
            )
    next_number = max((v.version for v in versions), default=0) + 1
    if not renumber and next_number != pack.version:
        raise InvalidInputError(
            f"{persona_id}'s next version here is v{next_number}, the archive holds v{pack.version}; "
            "import with renumber to publish it as the next version"
        )

    if created_persona:
        meta.create_persona(persona_id, dict(verified.manifest.persona_metadata))
    manifest = verified.manifest
    # The version row's times will be the import's; the pack's own build time travels here.
    origin = ImportedFrom(persona_id=persona_id, version=pack.version, content_hash=manifest.content_hash,
                          pack_sha256=manifest.pack_sha256, built_at=pack.created_at)
    record = meta.create_version(persona_id, ImportedInputs(imported_from=origin).model_dump(mode="json"))
    # The version row must not stay pending forever: any failure below records why.
    with fail_version_on_error(meta, persona_id, record.version, "import failed"):
        if record.version != pack.version:
            if not renumber:  # someone else took the number between our read and now
                raise InvalidInputError(
                    f"{persona_id} v{pack.version} was taken concurrently; retry with renumber"
                )
            pack = pack.model_copy(update={"version": record.version})
        # Blobs first (held by the new version from the moment they are written); publish_pack
        # re-verifies them, stores the pack JSON and flips the version in one transaction.
        tracked = TrackedBlobStore(blobs, meta.refs, persona_id, record.version)
        for ref, data in sorted(verified.blobs.items()):
            if tracked.put(data) != ref:
                raise IntegrityError(f"blob store stored {ref} under another hash")
        published = publish_pack(meta, tracked, pack)
    return _result(published, verified, created_persona=created_persona, already_present=False)


def _result(
    record: VersionRecord,
    verified: VerifiedArchive,
    *,
    created_persona: bool,
    already_present: bool,
) -> ImportResult:
    ref = record.pack_ref
    if ref is None:  # pragma: no cover - published records always carry their pack ref
        raise VersionNotFoundError(f"{record.persona_id} v{record.version} has no pack")
    return ImportResult(
        persona_id=record.persona_id,
        version=record.version,
        content_hash=verified.pack.content_hash or "",
        pack_ref=ref,
        blob_count=len(verified.blobs),
        created_persona=created_persona,
        already_present=already_present,
    )
