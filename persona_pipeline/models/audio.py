"""Reading voice clips: any libsndfile format (wav, flac, ogg) -> mono float32 at one rate."""

from __future__ import annotations

import io
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from persona_core.vision.errors import BadModelInputError


def _lowpass(up: int, down: int) -> np.ndarray:
    """scipy's ``resample_poly`` filter: a Kaiser (beta 5) windowed sinc, cut at the lower of the
    two Nyquist rates, 20 taps per rate step on each side, unit DC gain, times ``up``."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    m = np.arange(2 * half_len + 1) - half_len
    taps = np.sinc(m / max_rate) / max_rate * np.kaiser(2 * half_len + 1, 5.0)
    taps /= taps.sum()
    return taps * up


def resample_poly(wav: np.ndarray, up: int, down: int, chunk: int = 1 << 16) -> np.ndarray:
    """``scipy.signal.resample_poly(wav, up, down)`` (its default Kaiser window, zero padding) in
    numpy: the same samples to float32 rounding, without scipy.signal's second of import.
    Polyphase: output sample k sums the filter's taps of phase (k * down) % up against the input
    samples at and before (k * down) // up."""
    x = np.asarray(wav, np.float64)
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    h = _lowpass(up, down)
    half_len = (h.size - 1) // 2
    pre_pad = down - half_len % down
    h = np.concatenate((np.zeros(pre_pad), h))
    skip = (half_len + pre_pad) // down  # outputs before the filter's centre reaches sample 0
    n_taps = -(-h.size // up)
    h = np.concatenate((h, np.zeros(n_taps * up - h.size)))
    phases = h.reshape(n_taps, up).T  # phases[p, t] = h[p + t * up]
    padded = np.concatenate((np.zeros(n_taps), x, np.zeros(1)))  # x[-t] reads 0 before the start
    out = np.empty(n_out, np.float64)
    t = np.arange(n_taps)
    for start in range(0, n_out, chunk):
        k = np.arange(start, min(start + chunk, n_out)) + skip
        base = (k * down) // up
        idx = np.clip(base[:, None] - t[None, :], -n_taps, n_in) + n_taps  # past the end reads 0
        out[start : start + k.size] = np.einsum("kt,kt->k", phases[(k * down) % up], padded[idx])
    return out


def resample(wav: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return wav.astype(np.float32, copy=False)
    g = gcd(int(source_rate), int(target_rate))
    # Polyphase filtering: band-limits before decimating, no librosa/numba/scipy start-up cost.
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
