"""Reading voice clips: any libsndfile format (wav, flac, ogg) -> mono float32 at one rate."""

from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from persona_core.vision.errors import BadModelInputError


def resample(wav: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return wav.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # noqa: PLC0415 - ~1 s to import; most clips need no resampling

    g = gcd(int(source_rate), int(target_rate))
    # Polyphase filtering: band-limits before decimating, no librosa/numba start-up cost.
    return resample_poly(wav, target_rate // g, source_rate // g).astype(np.float32)


def load_wav(path_or_bytes: str | Path | bytes, sample_rate: int = 16000) -> np.ndarray:
    """The clip as mono float32 in [-1, 1] at ``sample_rate``; BadModelInputError if unreadable."""
    source = (
        io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
    )
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise BadModelInputError(f"not a readable audio clip: {exc}") from exc
    if data.shape[0] == 0:
        raise BadModelInputError("audio clip has no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise BadModelInputError("audio clip holds non-finite samples")
    return resample(mono, int(rate), int(sample_rate))
