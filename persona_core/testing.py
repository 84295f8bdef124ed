"""Builders for tests and benchmarks: a real, schema-valid PersonaPack with its blobs.

``make_pack`` writes real bytes to a blob store (float32 embedding matrices, one blob per
kind, and small PNG images), so everything that loads a pack -- publish, the registry,
the runtime cache -- exercises the same code paths as for a pipeline-built pack. It is
deterministic for a given ``seed`` and fast enough for 200-anchor benchmark packs.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from persona_core.embeddings import matrix_to_bytes
from persona_core.pack import (
    Anchor,
    AnchorMetadata,
    AnchorQuality,
    BehaviorPolicy,
    BoolTag,
    CameraMode,
    CameraModeTag,
    CheckResult,
    Expression,
    HeadPose,
    Identity,
    InputRecord,
    Lighting,
    ModelRecord,
    PersonaPack,
    Provenance,
    Range,
    Style,
    VoiceProfile,
    default_behavior_policy,
)
from persona_core.refs import row_ref
from persona_core.store.base import BlobStore

ALL_MODES: tuple[CameraMode, ...] = (CameraMode.A_SELFIE, CameraMode.B_MIRROR, CameraMode.C_CUTAWAY)
_EXPRESSIONS = list(Expression)
_LIGHTING = list(Lighting)
_BEST_FOR = (["talking", "closeup"], ["listening"], ["reaction", "wide"])
CREATED_AT = "2024-01-01T00:00:00+00:00"


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as a PNG (no image library needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _unit_rows(rng: np.random.Generator, n: int, dim: int, spread: float) -> np.ndarray:
    # Rows near one shared direction: anchors of one person agree (cosine ~0.9), as real ones do.
    base = rng.standard_normal(dim)
    rows = base + spread * rng.standard_normal((n, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def make_pack(
    blobs: BlobStore,
    persona_id: str,
    version: int,
    *,
    n_anchors: int = 6,
    modes: Sequence[CameraMode | str] = ALL_MODES,
    identity_dim: int = 128,
    style_dim: int = 1280,
    seed: int = 0,
    image_size: int = 16,
    with_voice: bool = True,
    behavior: BehaviorPolicy | None = None,
) -> PersonaPack:
    """A sealed, schema-valid pack whose every ref exists in ``blobs``.

    ``n_anchors`` is the total over all ``modes`` (dealt round-robin, so each mode gets at
    least one when ``n_anchors >= len(modes)``); the first anchor of each mode is canonical.
    Embeddings: one identity matrix (n_anchors x identity_dim), one style matrix, one
    centroid (1 x identity_dim) and, with ``with_voice``, one 256-d speaker matrix.
    """
    mode_list = [CameraMode(m) for m in modes]
    if not mode_list or n_anchors < len(mode_list):
        raise ValueError("need at least one anchor per mode")
    rng = np.random.default_rng(seed)

    ident = _unit_rows(rng, n_anchors, identity_dim, spread=0.35)
    centroid = ident.mean(axis=0, keepdims=True)
    centroid /= np.linalg.norm(centroid)
    ident_ref = blobs.put(matrix_to_bytes(ident))
    centroid_ref = blobs.put(matrix_to_bytes(centroid))
    style_ref = blobs.put(matrix_to_bytes(_unit_rows(rng, n_anchors, style_dim, spread=0.5)))

    # Per-anchor images: a seeded noise tile with the anchor index stamped into the first
    # pixels, so every image (and so every ref) is distinct without per-anchor RNG calls.
    tiles = rng.integers(0, 256, size=(2, image_size, image_size, 3), dtype=np.uint8)
    yaw = rng.uniform(-40, 40, n_anchors)
    pitch = rng.uniform(-20, 20, n_anchors)
    roll = rng.uniform(-10, 10, n_anchors)
    qual = rng.uniform(0.5, 1.0, (n_anchors, 6))

    anchor_sets: dict[CameraMode, list[Anchor]] = {m: [] for m in mode_list}
    inputs: list[InputRecord] = []
    for i in range(n_anchors):
        stamp = np.frombuffer(struct.pack(">I", i) + bytes([seed % 256, version % 256]), dtype=np.uint8)
        source = tiles[0].copy()
        source.reshape(-1)[: stamp.size] = stamp
        crop = tiles[1].copy()
        crop.reshape(-1)[: stamp.size] = stamp
        source_png = png_bytes(source)
        image_ref = blobs.put(source_png)
        crop_ref = blobs.put(png_bytes(crop))
        source_sha = hashlib.sha256(source_png).hexdigest()
        inputs.append(InputRecord(name=f"photo_{i:04d}.png", sha256=source_sha, kind="image", accepted=True))
        mode = mode_list[i % len(mode_list)]
        q = qual[i]
        anchor_sets[mode].append(
            Anchor(
                anchor_id=f"{mode.value.lower()}-{i:04d}",
                image_ref=image_ref,
                face_crop_ref=crop_ref,
                embedding_ref=row_ref(ident_ref, i),
                style_embedding_ref=row_ref(style_ref, i),
                source_sha256=source_sha,
                canonical=not anchor_sets[mode],
                metadata=AnchorMetadata(
                    expression_tag=_EXPRESSIONS[i % len(_EXPRESSIONS)],
                    head_pose=HeadPose(yaw=float(yaw[i]), pitch=float(pitch[i]), roll=float(roll[i])),
                    lighting_tag=_LIGHTING[i % len(_LIGHTING)],
                    crop_box=[0, 0, image_size, image_size],
                    best_for=list(_BEST_FOR[i % len(_BEST_FOR)]),
                    expression_confidence=0.8,
                    eyes_open=BoolTag(value=i % 5 != 4, confidence=0.9),
                    mouth_closed=BoolTag(value=i % 3 != 2, confidence=0.85),
                    camera_mode=CameraModeTag(value=mode, confidence=0.9, source="inferred",
                                              framing="close" if mode == CameraMode.A_SELFIE else "medium",
                                              evidence={"face_frac": 0.4}),
                ),
                quality=AnchorQuality(
                    overall=float(q[0]),
                    sharpness=float(q[1]),
                    exposure=float(q[2]),
                    face_size=float(q[3]),
                    frontalness=float(q[4]),
                    identity_consistency=float(q[5]),
                    eyes_open=0.9 if i % 5 != 4 else 0.1,
                    mouth_closed=0.85 if i % 3 != 2 else 0.2,
                    expression_neutrality=0.8,
                ),
            )
        )

    voice = None
    if with_voice:
        speaker_ref = blobs.put(matrix_to_bytes(_unit_rows(rng, 1, 256, spread=0.0)))
        voice = VoiceProfile(
            speaker_embedding_ref=row_ref(speaker_ref, 0),
            embedding_model="resemblyzer",
            prosody_bounds={"pitch_semitones": Range(min=-2.0, max=2.0), "rate": Range(min=0.9, max=1.1)},
        )

    fake_weights = hashlib.sha256(b"persona_core.testing weights").hexdigest()
    pack = PersonaPack(
        persona_id=persona_id,
        version=version,
        created_at=CREATED_AT,
        anchor_sets=anchor_sets,
        identity=Identity(
            face_embedding_refs=[row_ref(ident_ref, i) for i in range(n_anchors)],
            embedding_model="sface_2021dec_int8",
            embedding_dim=identity_dim,
            centroid_ref=row_ref(centroid_ref, 0),
        ),
        style=Style(
            style_embedding_refs=[row_ref(style_ref, i) for i in range(n_anchors)],
            embedding_model="efficientnet_lite0",
            embedding_dim=style_dim,
            stage_constraints={"background": "studio"},
        ),
        voice_profile=voice,
        behavior_policy=behavior or default_behavior_policy(),
        provenance=Provenance(
            inputs=inputs,
            models=[
                ModelRecord(
                    name="sface_2021dec_int8",
                    task="identity",
                    weights_sha256=[fake_weights],
                    licence="Apache-2.0",
                ),
            ],
            pipeline_version="testing",
            run_id=f"make-pack-{seed}",
        ),
        checks=[
            CheckResult(
                name="enough_anchors",
                passed=True,
                severity="ERROR",
                metadata={"observed": n_anchors, "threshold": len(mode_list)},
            )
        ],
    )
    return pack.sealed()
