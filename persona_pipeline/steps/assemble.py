"""Step ``persona_pack``: the PersonaPack from the anchor selection, embeddings as one
float32 matrix blob per kind, voice and behaviour (or safe defaults), provenance and checks.

Deterministic: equal inputs give an equal content hash (anchor order is by mode then rank,
ties broken by content; scores rounded; volatile fields are outside the hash).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from persona_core.embeddings import matrix_to_bytes
from persona_core.errors import InvalidInputError
from persona_core.pack import (
    Anchor,
    AnchorMetadata,
    AnchorQuality,
    BehaviorPolicy,
    BoolTag,
    CameraMode,
    CameraModeTag,
    Expression,
    HeadPose,
    Identity,
    InputRecord,
    Lighting,
    ModelRecord,
    PersonaPack,
    Provenance,
    Range,
    RefreshPolicy,
    Style,
    VoiceProfile,
    default_behavior_policy,
)
from persona_core.refs import row_ref
from persona_core.store.base import BlobStore
from persona_core.vision.calibration import UPLOADER_KEYS, calibrate
from persona_pipeline.steps.anchors import AnchorSelection, Candidate, identity_scale_of
from persona_pipeline.steps.checks import CheckOutcome
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.embeddings import Embeddings, VoiceEmbedding
from persona_pipeline.steps.inputs import VersionInputs
from persona_pipeline.steps.masks import MasksResult
from persona_pipeline.steps.qc import binary_tag

PIPELINE_VERSION = "persona_pipeline/1.0"
DEFAULT_PROSODY = {"pitch_semitones": Range(min=-2.0, max=2.0), "rate": Range(min=0.9, max=1.1)}


def _normalised(mat: np.ndarray) -> np.ndarray:
    return (mat / np.maximum(np.linalg.norm(mat, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


FRAMINGS: dict[str, Literal["close", "medium", "wide"]] = {
    "close": "close", "medium": "medium", "wide": "wide"}


def mesh_tags(c: Candidate, config: PipelineConfig) -> dict[str, Any]:
    """The anchor's face-mesh and camera-mode tags, each with its confidence."""
    eyes, eyes_conf = binary_tag(c.eye_open, config.min_eye_open, above=True)
    mouth, mouth_conf = binary_tag(c.mouth_open, config.mouth_closed_max, above=False)
    evidence = json.loads(c.mode_evidence) if c.mode_evidence else {}
    evidence.pop("why", None)
    return {
        "expression_confidence": c.expression_confidence,
        "eyes_open": BoolTag(value=eyes, confidence=eyes_conf),
        "mouth_closed": BoolTag(value=mouth, confidence=mouth_conf),
        "camera_mode": CameraModeTag(value=CameraMode(c.mode), confidence=c.mode_confidence,
                                     source="uploader" if c.mode_source == "uploader" else "inferred",
                                     framing=FRAMINGS.get(c.framing, "close"), evidence=evidence),
    }


def model_records(models: list[Any]) -> list[ModelRecord]:
    return [ModelRecord(name=m.entry.name, task=m.entry.task, weights_sha256=list(m.weights_sha256),
                        licence=m.entry.licence, noncommercial_opt_in=not m.entry.commercial_use,
                        providers=list(m.providers))
            for m in models]


def input_records(inputs: VersionInputs, qc_rows: dict[str, tuple[bool, str]],
                  dropped: dict[str, str]) -> list[InputRecord]:
    """Every uploaded file (and sampled video frame) with whether it was used and why not."""
    rejected = {r.name: r.reason for r in inputs.rejected}
    records = []
    for f in inputs.files:
        if f.kind == "voice":
            reason = rejected.get(f.name, "")
            records.append(InputRecord(name=f.name, sha256=f.sha256, kind="voice", accepted=not reason,
                                       reason=reason))
        elif f.kind == "video":
            frames = [i for i in inputs.images if i.source_video == f.name]
            used = sum(1 for i in frames if qc_rows.get(i.name, (False, ""))[0] and i.name not in dropped)
            none_used = f"none of its {len(frames)} sampled frames passed"
            reason = rejected.get(f.name) or ("" if used else none_used)
            records.append(InputRecord(name=f.name, sha256=f.sha256, kind="video", accepted=not reason,
                                       reason=reason))
    for img in inputs.images:
        passed, why = qc_rows.get(img.name, (False, "not checked"))
        reason = why if not passed else dropped.get(img.name, "")
        accepted = passed and not reason.startswith("identity outlier")
        records.append(InputRecord(name=img.name, sha256=img.sha256, kind="image", accepted=accepted,
                                   reason=reason))
    return records


def voice_profile(inputs: VersionInputs, voice: VoiceEmbedding, blobs: BlobStore) -> VoiceProfile:
    given = inputs.voice_config or VoiceProfile()
    ref = None
    if voice.vector is not None:
        ref = row_ref(blobs.put(matrix_to_bytes(voice.vector[None, :])), 0)
    return VoiceProfile(
        provider_voice_id=given.provider_voice_id,
        speaker_embedding_ref=ref or given.speaker_embedding_ref,
        embedding_model=voice.model or given.embedding_model,
        prosody_bounds=given.prosody_bounds or dict(DEFAULT_PROSODY),
        defaults_applied=inputs.voice_config is None or voice.vector is None,
    )


def behavior_policy(inputs: VersionInputs) -> BehaviorPolicy:
    if inputs.behavior_policy is None:
        return default_behavior_policy()
    return inputs.behavior_policy.model_copy(update={"defaults_applied": False})


def refresh_policy(inputs: VersionInputs, identity_vectors: np.ndarray, identity_model: str) -> RefreshPolicy:
    """The pack's refresh policy: the uploader's lines where given, identity lines calibrated to
    this pack's anchors and identity model otherwise, the calibration recorded either way."""
    given = {k: v for k, v in (inputs.refresh_policy or {}).items() if k != "identity_calibration"}
    try:
        base = RefreshPolicy.model_validate(given)
    except ValueError as exc:
        raise InvalidInputError(f"refresh policy is invalid: {exc}") from None
    uploader = {k: given[k] for k in UPLOADER_KEYS if k in given}
    cal = calibrate(identity_vectors, identity_model, identity_scale_of(identity_model), uploader)
    return base.model_copy(update={"identity_drift_warn": cal.identity_drift_warn,
                                   "identity_drift_fail": cal.identity_drift_fail,
                                   "identity_calibration": cal})


def assemble_pack(
    inputs: VersionInputs,
    selection: AnchorSelection,
    identity: Embeddings,
    style: Embeddings,
    voice: VoiceEmbedding,
    *,
    masks: MasksResult,
    blobs: BlobStore,
    qc_rows: dict[str, tuple[bool, str]],
    models: list[Any],
    checks: list[CheckOutcome],
    config: PipelineConfig,
    run_id: str,
) -> PersonaPack:
    """A sealed pack whose every ref is in ``blobs``; raises InvalidInputError without anchors."""
    ordered = selection.ordered()
    if not ordered:
        raise InvalidInputError("no usable anchors: nothing to publish")
    ident = _normalised(np.stack([identity.vectors[c.face.sha256] for c in ordered]))
    styl = _normalised(np.stack([style.vectors[c.face.sha256] for c in ordered]))
    ident_ref = blobs.put(matrix_to_bytes(ident))
    style_ref = blobs.put(matrix_to_bytes(styl))
    centroid_ref = blobs.put(matrix_to_bytes(_normalised(ident.mean(axis=0, keepdims=True))))

    anchor_sets: dict[CameraMode, list[Anchor]] = {}
    for i, c in enumerate(ordered):
        q = c.quality
        first_of_mode = not anchor_sets.get(CameraMode(c.mode))
        anchor_sets.setdefault(CameraMode(c.mode), []).append(Anchor(
            anchor_id=c.anchor_id,
            image_ref=c.face.image_ref,
            face_crop_ref=c.face.crop_ref,
            mask_ref=masks.mask_refs.get(c.face.sha256),
            embedding_ref=row_ref(ident_ref, i),
            style_embedding_ref=row_ref(style_ref, i),
            source_sha256=c.face.sha256,
            canonical=first_of_mode,
            metadata=AnchorMetadata(
                expression_tag=Expression(c.expression),
                head_pose=HeadPose(yaw=c.head_pose[0], pitch=c.head_pose[1], roll=c.head_pose[2]),
                lighting_tag=Lighting(c.lighting),
                crop_box=list(c.face.crop_box),
                best_for=c.best_for(),
                canonical_choice=selection.canonical.get(c.mode) if first_of_mode else None,
                **mesh_tags(c, config),
            ),
            quality=AnchorQuality(**q),
        ))
    lighting = Counter(c.lighting for c in ordered).most_common(1)[0][0]
    pack = PersonaPack(
        persona_id=inputs.persona_id,
        version=inputs.version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        anchor_sets=anchor_sets,
        identity=Identity(face_embedding_refs=[row_ref(ident_ref, i) for i in range(len(ordered))],
                          embedding_model=identity.model, embedding_dim=identity.dim,
                          centroid_ref=row_ref(centroid_ref, 0)),
        style=Style(style_embedding_refs=[row_ref(style_ref, i) for i in range(len(ordered))],
                    embedding_model=style.model, embedding_dim=style.dim,
                    stage_constraints={"lighting": lighting, "portrait_size": config.portrait_size}),
        voice_profile=voice_profile(inputs, voice, blobs),
        behavior_policy=behavior_policy(inputs),
        refresh_policy=refresh_policy(inputs, ident, identity.model),
        provenance=Provenance(
            inputs=input_records(inputs, qc_rows, selection.dropped),
            models=model_records(models),
            pipeline_version=PIPELINE_VERSION,
            run_id=run_id,
            # Worker count changes speed, never content: kept out so the hash does not move.
            config={k: v for k, v in config.as_dict().items() if k != "workers"},
        ),
        checks=[c.to_pack() for c in checks],
    )
    return pack.sealed()
