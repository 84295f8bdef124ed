"""Publish a PersonaPack: blobs verified, pack JSON stored, then one DB transaction.

Order: seal (content hash) -> schema -> every referenced blob fetched and re-hashed (and
each embedding row checked to exist with the declared width) -> canonical pack JSON
written as a blob -> ``meta.publish`` flips the version in a single transaction. A crash
at any step before that commit leaves the version unpublished and at most some
content-addressed blobs nobody points at; calling ``publish_pack`` again succeeds because
blob writes are idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from persona_core.embeddings import matrix_from_bytes
from persona_core.errors import InvalidInputError, PackValidationError
from persona_core.pack import PersonaPack
from persona_core.refs import find_refs, parse_ref
from persona_core.schema import validate_pack_document
from persona_core.store.base import BlobStore, MetadataStore, PublishedPack, VersionRecord


def publish_pack(
    meta: MetadataStore, blobs: BlobStore, pack: PersonaPack, *, workers: int = 8
) -> VersionRecord:
    """Verify and publish ``pack`` as its ``persona_id``/``version``; returns the published record.

    Raises PackValidationError (schema, rows, widths), BlobNotFoundError / IntegrityError
    (a referenced blob is missing or altered), ImmutableVersionError (already published),
    InvalidTransitionError (the version is blocked or failed).
    """
    sealed = pack.sealed()
    validate_pack_document(sealed.to_json_dict())
    verify_pack_blobs(blobs, sealed, workers=workers)
    pack_ref = blobs.put(sealed.canonical_bytes())
    record = PublishedPack(
        persona_id=sealed.persona_id,
        version=sealed.version,
        pack_ref=pack_ref,
        content_hash=sealed.content_hash or "",
        # The blobs just verified, so the record lists exactly what publish vouched for.
        blob_refs=sorted(sealed.all_blob_refs()),
    )
    return meta.publish(record, checks=[c.model_dump(mode="json") for c in sealed.checks])


def verify_pack_blobs(blobs: BlobStore, pack: PersonaPack, *, workers: int = 8) -> None:
    """Fetch every blob the pack points at (the store re-hashes each), check that row refs
    name existing rows and that embedding widths match the pack's declared dims."""
    _check_blobs(pack, sorted(pack.all_blob_refs()), blobs.get, workers)


def check_embedding_rows(
    pack: PersonaPack, fetch: Callable[[str], bytes], *, workers: int = 1
) -> None:
    """Check every embedding row ref ``sha256:<m>#<row>`` against the bytes of matrix ``m``
    (``fetch(blob_ref)``): the matrix parses, the row exists, its width is the declared dim.

    Raises PackValidationError. Publish runs this on the store's blobs; archive import on
    the archive's members before it writes anything.
    """
    _check_blobs(pack, sorted(_rows_by_blob(pack)), fetch, workers)


def _check_blobs(pack: PersonaPack, refs: list[str], fetch: Callable[[str], bytes], workers: int) -> None:
    rows = _rows_by_blob(pack)
    widths = _declared_widths(pack)

    def check(ref: str) -> None:
        data = fetch(ref)
        if ref in rows:
            _check_matrix(ref, data, rows[ref], widths.get(ref))

    # Every blob is fetched once, so a store-backed fetch verifies hashes and rows together.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(check, refs):
            pass


def _check_matrix(ref: str, data: bytes, rows: set[int], width: tuple[str, int] | None) -> None:
    try:
        matrix = matrix_from_bytes(data)
    except InvalidInputError as exc:
        raise PackValidationError(f"{ref} is referenced by row but {exc}") from None
    n, dim = matrix.shape
    bad = sorted(r for r in rows if r >= n)
    if bad:
        raise PackValidationError(f"{ref} has {n} rows; the pack points at row(s) {bad}")
    if width is not None and width[1] != dim:
        field, declared = width
        raise PackValidationError(f"{field} rows are {dim}-d, the pack declares {declared}", field=field)


def _rows_by_blob(pack: PersonaPack) -> dict[str, set[int]]:
    rows: dict[str, set[int]] = defaultdict(set)
    for ref in find_refs(pack.to_json_dict()):
        parsed = parse_ref(ref)
        if parsed.row is not None:
            rows[parsed.blob].add(parsed.row)
    return rows


def _declared_widths(pack: PersonaPack) -> dict[str, tuple[str, int]]:
    widths: dict[str, tuple[str, int]] = {}
    identity_refs = [*pack.identity.face_embedding_refs, pack.identity.centroid_ref]
    style_refs = list(pack.style.style_embedding_refs)
    for anchors in pack.anchor_sets.values():
        identity_refs += [a.embedding_ref for a in anchors]
        style_refs += [a.style_embedding_ref for a in anchors]
    for ref in identity_refs:
        widths[parse_ref(ref).blob] = ("identity.embedding_dim", pack.identity.embedding_dim)
    for ref in style_refs:
        widths[parse_ref(ref).blob] = ("style.embedding_dim", pack.style.embedding_dim)
    return widths
