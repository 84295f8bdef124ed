"""Resemblyzer speaker embedding (GE2E LSTM, 256-d), built lazily on the first clip.

Importing resemblyzer pulls librosa/numba, whose first call compiles for ~20 s; building at
load time would make every pipeline start pay that even when no voice clip was uploaded."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_pipeline.models.base import SILENCE_RMS, VoiceEmbedder

MIN_SPEECH_S = 0.5


def check_clip(wav: object) -> np.ndarray:
    if not isinstance(wav, np.ndarray) or wav.ndim != 1 or wav.size == 0:
        raise BadModelInputError(f"expected a 1-D mono clip, got shape {getattr(wav, 'shape', None)}")
    clip = wav.astype(np.float32, copy=False)
    if not np.isfinite(clip).all():
        raise BadModelInputError("clip holds non-finite samples")
    return clip


class ResemblyzerVoice(VoiceEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path) -> None:
        self.entry = entry
        self.dim = int(entry.preprocessing["dim"])
        self.sample_rate = int(entry.preprocessing["sample_rate"])
        self._weights = weights
        self._encoder: Any = None
        self._lock = threading.Lock()

    def _ready(self) -> Any:
        with self._lock:
            if self._encoder is None:
                with warnings.catch_warnings():  # its scipy.ndimage.morphology import is deprecated
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from resemblyzer import VoiceEncoder  # noqa: PLC0415 - slow import, see module doc

                self._encoder = VoiceEncoder(device="cpu", verbose=False, weights_fpath=self._weights)
            return self._encoder

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """(256,) float32, L2-normalised, of a mono float32 clip at 16 kHz (silences trimmed)."""
        clip = check_clip(wav)
        if float(np.sqrt(np.mean(np.square(clip)))) < SILENCE_RMS:
            raise BadModelInputError("clip is silent")
        encoder = self._ready()
        from resemblyzer import preprocess_wav  # noqa: PLC0415 - imported by _ready()

        speech = preprocess_wav(clip, source_sr=self.sample_rate)
        if speech.size < MIN_SPEECH_S * self.sample_rate or not np.isfinite(speech).all():
            raise BadModelInputError(f"clip has less than {MIN_SPEECH_S} s of speech after trimming silence")
        emb = np.asarray(encoder.embed_utterance(speech), np.float32)
        return emb / max(float(np.linalg.norm(emb)), 1e-12)


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> ResemblyzerVoice:
    return ResemblyzerVoice(entry, paths[0])
