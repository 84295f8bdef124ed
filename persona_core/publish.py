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
        blob_refs=sorted(sealed.all_blob_refs()),
    )
    return meta.publish(record, checks=[c.model_dump(mode="json") for c in sealed.checks])


def verify_pack_blobs(blobs: BlobStore, pack: PersonaPack, *, workers: int = 8) -> None:
    """Fetch every blob the pack points at (the store re-hashes each), check that row refs
    name existing rows and that embedding widths match the pack's declared dims."""
    doc = pack.to_json_dict()
    rows: dict[str, set[int]] = defaultdict(set)
    digests: set[str] = {parse_ref(r).digest for r in pack.all_blob_refs()}
    for ref in find_refs(doc):
        parsed = parse_ref(ref)
        digests.add(parsed.digest)
        if parsed.row is not None:
            rows[parsed.digest].add(parsed.row)
    widths = _declared_widths(pack)

    def check(digest: str) -> None:
        data = blobs.get(f"sha256:{digest}")
        if digest not in rows:
            return
        try:
            matrix = matrix_from_bytes(data)
        except InvalidInputError as exc:
            raise PackValidationError(f"sha256:{digest} is referenced by row but {exc}") from None
        n, dim = matrix.shape
        bad = sorted(r for r in rows[digest] if r >= n)
        if bad:
            raise PackValidationError(f"sha256:{digest} has {n} rows; the pack points at row(s) {bad}")
        want = widths.get(digest)
        if want is not None and want[1] != dim:
            raise PackValidationError(
                f"{want[0]} rows are {dim}-d, the pack declares {want[1]}", field=want[0]
            )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(check, sorted(digests)):
            pass


def _declared_widths(pack: PersonaPack) -> dict[str, tuple[str, int]]:
    widths: dict[str, tuple[str, int]] = {}
    identity_refs = [*pack.identity.face_embedding_refs, pack.identity.centroid_ref]
    style_refs = list(pack.style.style_embedding_refs)
    for anchors in pack.anchor_sets.values():
        identity_refs += [a.embedding_ref for a in anchors]
        style_refs += [a.style_embedding_ref for a in anchors]
    for ref in identity_refs:
        widths[parse_ref(ref).digest] = ("identity.embedding_dim", pack.identity.embedding_dim)
    for ref in style_refs:
        widths[parse_ref(ref).digest] = ("style.embedding_dim", pack.style.embedding_dim)
    return widths
