"""SpeechBrain ECAPA-TDNN speaker embedding as ONNX (voice embedder), from a local model dir.

Two export shapes are accepted, told apart by the graph's input rank: the whole encoder on a
raw 16 kHz waveform (N, T), or the embedding network alone on features (N, frames, n_mels), in
which case the SpeechBrain-style log-mel filterbank below is computed here in numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.sessions import make_session
from persona_pipeline.models.base import VoiceEmbedder
from persona_pipeline.models.resemblyzer_voice import check_clip


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, peak 1."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_mels + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (center - lower)
    falling = (upper - freqs[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def fbank(wav: np.ndarray, pre: dict[str, Any], filters: np.ndarray) -> np.ndarray:
    """(frames, n_mels) log-mel features, per-utterance mean removed (SpeechBrain's recipe)."""
    n_fft, win, hop = int(pre["n_fft"]), int(pre["win_length"]), int(pre["hop_length"])
    padded = np.pad(wav, (n_fft // 2, n_fft // 2))  # centred frames, like torch.stft(center=True)
    n_frames = 1 + (len(padded) - n_fft) // hop
    if n_frames < 1:
        raise BadModelInputError("clip is shorter than one analysis window")
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = np.zeros(n_fft, np.float32)
    start = (n_fft - win) // 2
    window[start : start + win] = np.hamming(win + 1)[:-1]
    power = np.abs(np.fft.rfft(padded[idx] * window, n=n_fft, axis=1)) ** 2
    db = 10.0 * np.log10(np.maximum(power @ filters, 1e-10))
    db = np.maximum(db, db.max() - 80.0)  # top_db 80
    return (db - db.mean(axis=0, keepdims=True)).astype(np.float32)


class EcapaOnnxVoice(VoiceEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...]) -> None:
        self.entry = entry
        self.pre = dict(entry.preprocessing)
        self.sample_rate = int(self.pre["sample_rate"])
        self._session = make_session(weights, providers)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self.takes_features = len(inp.shape) == 3
        self._filters = mel_filters(
            self.sample_rate,
            int(self.pre["n_fft"]),
            int(self.pre["n_mels"]),
            float(self.pre["f_min"]),
            float(self.pre["f_max"]),
        )
        out_dim = self._session.get_outputs()[0].shape[-1]
        self.dim = int(out_dim) if isinstance(out_dim, int) else int(self.pre["dim"])

    def features(self, wav: np.ndarray) -> np.ndarray:
        """(frames, n_mels) normalised log-mel features of a 16 kHz clip, as fed to the graph."""
        return fbank(check_clip(wav), self.pre, self._filters)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """(dim,) float32, L2-normalised speaker embedding of a mono float32 16 kHz clip."""
        clip = check_clip(wav)
        x = self.features(clip)[None] if self.takes_features else clip[None]
        emb = self._session.run(None, {self._input: x})[0].reshape(-1).astype(np.float32)
        return emb / max(float(np.linalg.norm(emb)), 1e-12)


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> EcapaOnnxVoice:
    return EcapaOnnxVoice(entry, paths[0], providers)
