"""What changed between two versions of a persona: a pure function over two packs
(:func:`diff_packs`), and :func:`centroid_cosine`, which reads the two identity centroids
from the blob store. Every door (HTTP, gRPC, the CLI) answers with the same :class:`PackDiff`.

Anchors are matched by their image blob (``image_ref``): the same photo has the same ref in
every version, whatever its anchor id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from persona_core.api_models import (
    AnchorChange,
    AnchorRef,
    CheckChange,
    FieldChange,
    InputRef,
    ModeDiff,
    PackDiff,
)
from persona_core.embeddings import matrix_from_bytes
from persona_core.pack import Anchor, PersonaPack
from persona_core.refs import parse_ref
from persona_core.store.base import BlobStore

__all__ = ["PackDiff", "centroid_cosine", "diff_packs", "load_centroid"]


def diff_packs(a: PersonaPack, b: PersonaPack, *, centroid_cosine: float | None = None) -> PackDiff:
    """Every difference from pack ``a`` to pack ``b`` of one persona; ``centroid_cosine`` is
    passed in (see :func:`centroid_cosine`) so this stays free of I/O."""
    if a.persona_id != b.persona_id:
        raise ValueError(f"packs of different personas: {a.persona_id!r} and {b.persona_id!r}")
    models_a = {m.name: m.model_dump(mode="json") for m in a.provenance.models}
    models_b = {m.name: m.model_dump(mode="json") for m in b.provenance.models}
    models = _changes("", models_a, models_b, depth=1)
    if a.provenance.pipeline_version != b.provenance.pipeline_version:
        models.insert(0, FieldChange(path="pipeline_version", before=a.provenance.pipeline_version,
                                     after=b.provenance.pipeline_version))
    inputs_a = {i.sha256: i for i in a.provenance.inputs}
    inputs_b = {i.sha256: i for i in b.provenance.inputs}
    return PackDiff(
        persona_id=a.persona_id,
        from_version=a.version,
        to_version=b.version,
        from_content_hash=a.content_hash,
        to_content_hash=b.content_hash,
        same_content=a.content_hash is not None and a.content_hash == b.content_hash,
        anchors=[_mode_diff(mode, a.anchor_sets.get(mode, []), b.anchor_sets.get(mode, []))
                 for mode in sorted(set(a.anchor_sets) | set(b.anchor_sets))],
        centroid_cosine=centroid_cosine,
        identity=_changes("identity", _identity(a), _identity(b)) + _changes("style", _style(a), _style(b)),
        refresh_policy=_changes("refresh_policy", _dump(a.refresh_policy), _dump(b.refresh_policy)),
        models=models,
        behavior=_changes("behavior_policy", _dump(a.behavior_policy), _dump(b.behavior_policy)),
        voice=_changes("voice_profile", _dump(a.voice_profile), _dump(b.voice_profile)),
        thresholds=_changes("", a.provenance.config, b.provenance.config),
        inputs_added=[_input(inputs_b[h]) for h in inputs_b if h not in inputs_a],
        inputs_removed=[_input(inputs_a[h]) for h in inputs_a if h not in inputs_b],
        checks=_checks(a, b),
    )


def load_centroid(blobs: BlobStore, pack: PersonaPack) -> np.ndarray:
    """The pack's identity centroid (one row of an embedding matrix blob)."""
    ref = parse_ref(pack.identity.centroid_ref)
    matrix = matrix_from_bytes(blobs.get(ref.blob))
    return np.asarray(matrix[ref.row or 0], dtype=np.float64)


def centroid_cosine(blobs: BlobStore, a: PersonaPack, b: PersonaPack) -> float | None:
    """Cosine between the two packs' identity centroids; None when their identity models
    differ (the vectors are then not comparable) or a centroid is a zero vector."""
    if (a.identity.embedding_model, a.identity.embedding_dim) != (
        b.identity.embedding_model, b.identity.embedding_dim
    ):
        return None
    va, vb = load_centroid(blobs, a), load_centroid(blobs, b)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    if norm == 0.0:
        return None
    return round(float(np.dot(va, vb)) / norm, 6)


def _mode_diff(mode: str, before: list[Anchor], after: list[Anchor]) -> ModeDiff:
    old = {x.image_ref: x for x in before}
    new = {x.image_ref: x for x in after}
    kept = []
    for ref in (r for r in new if r in old):
        a, b = old[ref], new[ref]
        tags = _changes("metadata", _dump(a.metadata), _dump(b.metadata))
        if a.canonical != b.canonical:
            tags.insert(0, FieldChange(path="canonical", before=a.canonical, after=b.canonical))
        kept.append(AnchorChange(image_ref=ref, from_anchor_id=a.anchor_id, to_anchor_id=b.anchor_id,
                                 changes=tags))
    return ModeDiff(
        camera_mode=str(mode),
        added=[_anchor(new[r]) for r in new if r not in old],
        removed=[_anchor(old[r]) for r in old if r not in new],
        kept=kept,
    )


def _anchor(anchor: Anchor) -> AnchorRef:
    return AnchorRef(image_ref=anchor.image_ref, anchor_id=anchor.anchor_id,
                     source_sha256=anchor.source_sha256, canonical=anchor.canonical)


def _input(record: Any) -> InputRef:
    return InputRef(name=record.name, sha256=record.sha256, kind=record.kind, accepted=record.accepted)


def _checks(a: PersonaPack, b: PersonaPack) -> list[CheckChange]:
    old = {c.name: c for c in a.checks}
    new = {c.name: c for c in b.checks}
    names = list(old) + [n for n in new if n not in old]
    return [
        CheckChange(
            name=name,
            severity=(new.get(name) or old[name]).severity,
            from_passed=old[name].passed if name in old else None,
            to_passed=new[name].passed if name in new else None,
        )
        for name in names
    ]


def _identity(pack: PersonaPack) -> dict[str, Any]:
    return {"embedding_model": pack.identity.embedding_model, "embedding_dim": pack.identity.embedding_dim}


def _style(pack: PersonaPack) -> dict[str, Any]:
    return {"embedding_model": pack.style.embedding_model, "embedding_dim": pack.style.embedding_dim,
            "stage_constraints": pack.style.stage_constraints}


def _dump(model: Any) -> Any:
    return None if model is None else model.model_dump(mode="json")


def _changes(prefix: str, before: Any, after: Any, *, depth: int = 8) -> list[FieldChange]:
    """Leaf differences between two JSON values, by dotted path (objects are walked ``depth``
    levels deep; lists and deeper values compare whole)."""
    if before == after:
        return []
    if depth > 0 and isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[FieldChange] = []
        for key in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _changes(path, before.get(key), after.get(key), depth=depth - 1)
        return out
    return [FieldChange(path=prefix, before=before, after=after)]
