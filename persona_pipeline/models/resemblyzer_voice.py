"""Resemblyzer speaker embedding (GE2E LSTM, 256-d), built lazily on the first clip.

Importing resemblyzer pulls librosa/numba, whose first call compiles for ~20 s; building at
load time would make every pipeline start pay that even when no voice clip was uploaded."""

from __future__ import annotations

import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_pipeline.models.base import SILENCE_RMS, VoiceEmbedder

MIN_SPEECH_S = 0.5
CUDA = "CUDAExecutionProvider"


def ensure_webrtcvad() -> None:
    """Make ``import webrtcvad`` (resemblyzer's voice activity detector) work.

    resemblyzer requires the ``webrtcvad`` distribution, the one that installs that module here;
    its ``webrtcvad.py`` reads its own version through ``pkg_resources``, which setuptools no
    longer ships. Its C extension ``_webrtcvad`` is sound: when the module fails on that import
    alone, the same four-call API is put in its place over the extension."""
    try:
        import webrtcvad  # noqa: F401, PLC0415 - checked here, used by resemblyzer
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise
        sys.modules["webrtcvad"] = _webrtcvad_over_extension()


def _webrtcvad_over_extension() -> types.ModuleType:
    import _webrtcvad  # noqa: PLC0415 - webrtcvad's extension

    class Vad:
        def __init__(self, mode: int | None = None) -> None:
            self._vad = _webrtcvad.create()
            _webrtcvad.init(self._vad)
            if mode is not None:
                self.set_mode(mode)

        def set_mode(self, mode: int) -> None:
            _webrtcvad.set_mode(self._vad, mode)

        def is_speech(self, buf: bytes, sample_rate: int, length: int | None = None) -> bool:
            length = length or len(buf) // 2
            if length * 2 > len(buf):
                raise IndexError(f"buffer has {len(buf) // 2} frames, but length argument was {length}")
            return bool(_webrtcvad.process(self._vad, sample_rate, buf, length))

    def valid_rate_and_frame_length(rate: int, frame_length: int) -> bool:
        return bool(_webrtcvad.valid_rate_and_frame_length(rate, frame_length))

    module = types.ModuleType("webrtcvad", "webrtcvad's API over its C extension (no pkg_resources)")
    module.Vad = Vad  # type: ignore[attr-defined]
    module.valid_rate_and_frame_length = valid_rate_and_frame_length  # type: ignore[attr-defined]
    return module


def torch_device(providers: tuple[str, ...]) -> str:
    """``cuda`` when the build asked for CUDA (``providers``, as for the ONNX models) and this
    torch build sees a GPU, else ``cpu``."""
    if CUDA not in providers:
        return "cpu"
    import torch  # noqa: PLC0415 - resemblyzer's own dependency, loaded with it

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_clip(wav: object) -> np.ndarray:
    if not isinstance(wav, np.ndarray) or wav.ndim != 1 or wav.size == 0:
        raise BadModelInputError(f"expected a 1-D mono clip, got shape {getattr(wav, 'shape', None)}")
    clip = wav.astype(np.float32, copy=False)
    if not np.isfinite(clip).all():
        raise BadModelInputError("clip holds non-finite samples")
    return clip


class ResemblyzerVoice(VoiceEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, device: str = "cpu") -> None:
        self.entry = entry
        self.device = device
        self.providers = (f"torch:{device}",)  # what it runs on, reported in the pack's provenance
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
                    ensure_webrtcvad()
                    from resemblyzer import VoiceEncoder  # noqa: PLC0415 - slow import, see module doc

                self._encoder = VoiceEncoder(device=self.device, verbose=False, weights_fpath=self._weights)
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
    return ResemblyzerVoice(entry, paths[0], torch_device(providers))
