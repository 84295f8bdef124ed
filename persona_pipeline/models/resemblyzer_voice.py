"""Resemblyzer speaker embedding (GE2E LSTM, 256-d) on onnxruntime.

resemblyzer runs on torch, and its preprocessing on librosa (numba) and scipy: seconds of
imports and warm-up in every fresh process, for a 3-layer LSTM and a short STFT. So the LSTM is
exported to ONNX once (torch is needed for that export only; the optimized graph is kept in the
model cache, keyed by the weights' sha256) and the preprocessing is resemblyzer's in numpy
(``voice_features``). torch stays as the fallback when the export cannot be made; that path
builds resemblyzer's own encoder lazily, on the first clip."""

from __future__ import annotations

import logging
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from persona_core.vision.base import ModelEntry
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.graph_cache import cached_session
from persona_pipeline.models import voice_features
from persona_pipeline.models.base import SILENCE_RMS, VoiceEmbedder
from persona_pipeline.models.voice_features import ensure_webrtcvad

log = logging.getLogger(__name__)

MIN_SPEECH_S = 0.5
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


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


def export_encoder(weights: Path) -> bytes:
    """resemblyzer's encoder at ``weights`` (mel partials (N, 160, 40) -> L2-normalised
    embeddings (N, 256)) as a serialized ONNX graph. Imports torch."""
    import torch  # noqa: PLC0415 - only to export, once per weights file and cache

    with warnings.catch_warnings():  # its scipy.ndimage.morphology import is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        ensure_webrtcvad()
        from resemblyzer import VoiceEncoder  # noqa: PLC0415

    encoder = VoiceEncoder(device="cpu", verbose=False, weights_fpath=weights).eval()
    # The TorchScript exporter needs no onnxscript; its notices say nothing about this LSTM.
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        target = Path(tmp) / "resemblyzer.onnx"
        torch.onnx.export(
            encoder,
            (torch.zeros(2, voice_features.PARTIAL_FRAMES, voice_features.MEL_CHANNELS),),
            target,
            input_names=["mels"],
            output_names=["embeds"],
            dynamic_axes={"mels": {0: "N"}, "embeds": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
        return target.read_bytes()


class ResemblyzerVoice(VoiceEmbedder):
    def __init__(self, entry: ModelEntry, weights: Path, providers: tuple[str, ...] = (CPU,),
                 cache_dir: Path | None = None) -> None:
        self.entry = entry
        self.dim = int(entry.preprocessing["dim"])
        self.sample_rate = int(entry.preprocessing["sample_rate"])
        self._weights = weights
        self._session: Any = None
        self._encoder: Any = None
        self._lock = threading.Lock()
        try:
            made = cached_session(entry.name, tuple(f.sha256 for f in entry.files), "resemblyzer-onnx-v1",
                                  lambda: export_encoder(weights), cache_dir=cache_dir, providers=providers)
        except Exception:  # export/ORT trouble must not take the voice step down
            log.warning("Resemblyzer ONNX export failed; using torch", exc_info=True)
            self.device = torch_device(providers)
            self.providers = (f"torch:{self.device}",)  # what it runs on, in the pack's provenance
            self.runtime = "torch"
        else:
            self._session, self.graph_from_cache = made.session, made.from_cache
            self.device = "cpu"
            self.runtime = "onnxruntime"

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
        speech = voice_features.preprocess(clip)
        if speech.size < MIN_SPEECH_S * self.sample_rate or not np.isfinite(speech).all():
            raise BadModelInputError(f"clip has less than {MIN_SPEECH_S} s of speech after trimming silence")
        if self._session is not None:
            partials = self._session.run(None, {"mels": voice_features.partial_mels(speech)})[0]
            mean = np.asarray(partials, np.float32).mean(axis=0)
            emb = mean / max(float(np.linalg.norm(mean)), 1e-12)
        else:
            emb = np.asarray(self._ready().embed_utterance(speech), np.float32)
        return (emb / max(float(np.linalg.norm(emb)), 1e-12)).astype(np.float32)


def build(
    entry: ModelEntry, paths: list[Path], providers: tuple[str, ...], cache_dir: Path
) -> ResemblyzerVoice:
    return ResemblyzerVoice(entry, paths[0], providers, cache_dir)
