"""Step ``inputs``: a version's files from the blob store, videos sampled into frames,
voice clips decoded and resampled.

Images are not decoded here (QC does that, only for inputs it has no cached result for);
this step only resolves what the version holds, so an unchanged input costs nothing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from persona_core.errors import InvalidInputError, PersonaCoreError
from persona_core.pack import BehaviorPolicy, VoiceProfile
from persona_core.refs import sha256_hex
from persona_core.store.base import BlobStore
from persona_core.version_inputs import UploadedFile, UploadedInputs
from persona_core.vision.errors import BadFrameError
from persona_core.vision.frames import every_nth_frame, open_video
from persona_pipeline.models.base import SILENCE_RMS
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.images import dhash, encode_jpeg, hamming

IMAGE, VIDEO, VOICE = "image", "video", "voice"


@dataclass(frozen=True, slots=True)
class ImageInput:
    name: str
    sha256: str
    ref: str
    camera_mode: str | None = None
    source_video: str | None = None  # set for frames sampled from a clip
    frame_time_s: float | None = None


@dataclass(frozen=True, slots=True)
class VoiceInput:
    name: str
    sha256: str
    wav: np.ndarray  # mono float32 at sample_rate
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return round(len(self.wav) / self.sample_rate, 3)


@dataclass(frozen=True, slots=True)
class Rejection:
    name: str
    sha256: str
    kind: str
    reason: str


@dataclass(frozen=True)
class VersionInputs:
    persona_id: str
    version: int
    files: tuple[UploadedFile, ...]
    images: tuple[ImageInput, ...]
    voices: tuple[VoiceInput, ...]
    rejected: tuple[Rejection, ...]
    behavior_policy: BehaviorPolicy | None
    voice_config: VoiceProfile | None
    counters: dict[str, int] = field(default_factory=dict)
    refresh_policy: dict[str, float | int] | None = None  # drift lines given with the upload (they win)


def load_inputs(
    persona_id: str,
    version: int,
    uploaded: UploadedInputs,
    blobs: BlobStore,
    config: PipelineConfig,
    *,
    load_wav: Callable[[bytes, int], np.ndarray] | None = None,
    sample_rate: int = 16000,
) -> VersionInputs:
    """Resolve a version's inputs; unreadable videos and voice clips become rejections."""
    files = uploaded.files
    images: list[ImageInput] = []
    voices: list[VoiceInput] = []
    rejected: list[Rejection] = []
    frame_cache = StepCache.for_step(
        blobs, "frames", config=config.fingerprint("video_frames_per_second", "video_max_frames",
                                                   "frame_duplicate_distance")
    )
    for f in files:
        if f.kind == IMAGE:
            images.append(ImageInput(f.name, f.sha256, f.ref, _mode(f)))
        elif f.kind == VIDEO:
            try:
                images.extend(_video_frames(f, blobs, config, frame_cache))
            except InvalidInputError as exc:
                rejected.append(Rejection(f.name, f.sha256, f.kind, f"video unreadable: {exc}"))
        else:
            if load_wav is None:
                raise InvalidInputError("voice clips given but no audio loader")
            try:
                wav = load_wav(blobs.get(f.ref), sample_rate)
            except PersonaCoreError as exc:
                rejected.append(Rejection(f.name, f.sha256, f.kind, f"audio unreadable: {exc}"))
                continue
            if wav.size < sample_rate // 2:
                rejected.append(Rejection(f.name, f.sha256, f.kind, "audio shorter than 0.5 s"))
                continue
            if float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) < SILENCE_RMS:
                # Refused here with a reason, like a too-short clip: the voice model would
                # otherwise fail the whole version on it.
                rejected.append(Rejection(f.name, f.sha256, f.kind, "audio is silent"))
                continue
            voices.append(VoiceInput(f.name, f.sha256, np.asarray(wav, dtype=np.float32), sample_rate))
    return VersionInputs(
        persona_id=persona_id,
        version=version,
        files=tuple(files),
        images=tuple(images),
        voices=tuple(voices),
        rejected=tuple(rejected),
        behavior_policy=uploaded.behavior_policy,
        voice_config=uploaded.voice,
        counters={f"frames_{k}": v for k, v in frame_cache.counters().items()},
        refresh_policy=uploaded.refresh_policy,
    )


# The temporary file's suffix comes from what the bytes are, not from the name (a label, which
# may say another format); versions stored before the gate recorded it use the name's.
_VIDEO_SUFFIXES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/x-msvideo": ".avi",
    "video/webm": ".webm",
}


def _mode(f: UploadedFile) -> str | None:
    return f.camera_mode.value if f.camera_mode is not None else None


def sample_video(data: bytes, suffix: str, config: PipelineConfig) -> list[tuple[float, np.ndarray]]:
    """(time_s, BGR frame) at ``video_frames_per_second``, near-duplicates dropped."""
    fd, tmp = tempfile.mkstemp(suffix=suffix or ".mp4")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            with open_video(tmp) as cap:
                kept = _distinct_frames(cap, config)
        except BadFrameError:
            raise InvalidInputError("OpenCV cannot open the clip") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    if not kept:
        raise InvalidInputError("no frames could be read")
    return kept


def _distinct_frames(cap: cv2.VideoCapture, config: PipelineConfig) -> list[tuple[float, np.ndarray]]:
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(fps / config.video_frames_per_second))
    kept: list[tuple[float, np.ndarray]] = []
    hashes: list[int] = []
    for index, frame in every_nth_frame(cap, step):
        h = dhash(frame)
        if all(hamming(h, o) > config.frame_duplicate_distance for o in hashes):
            hashes.append(h)
            kept.append((round(index / fps, 2), frame))
            if len(kept) >= config.video_max_frames:
                break
    return kept


def _video_frames(
    f: UploadedFile, blobs: BlobStore, config: PipelineConfig, cache: StepCache
) -> list[ImageInput]:
    cached = cache.get_json(f.sha256)
    if cached is None:
        suffix = _VIDEO_SUFFIXES.get(f.media_type or "", Path(f.name).suffix[:8])
        frames = sample_video(blobs.get(f.ref), suffix, config)
        cached = []
        for t, frame in frames:
            data = encode_jpeg(frame)
            cached.append({"t": t, "ref": blobs.put(data), "sha256": sha256_hex(data)})
        cache.put_json(f.sha256, cached, f.name)
    return [
        ImageInput(f"{f.name}@{c['t']:.2f}s", c["sha256"], c["ref"], _mode(f), f.name, c["t"])
        for c in cached
    ]
