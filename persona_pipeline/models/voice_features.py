"""Resemblyzer's input side in numpy: its preprocessing (volume normalisation, long silences
trimmed by webrtcvad), its 40-channel mel spectrogram and its partial-utterance slicing.

resemblyzer does the same through librosa (and librosa's numba) and scipy: importing and
warming those costs seconds in every fresh process, for a short STFT and a filter bank. These
functions give the same numbers (within float32 rounding; tests/models/test_models_voice.py
compares them with resemblyzer's own) with numpy and webrtcvad's C extension alone.
Constants are resemblyzer's ``hparams``.
"""

from __future__ import annotations

import sys
import types
from functools import cache

import numpy as np

SAMPLE_RATE = 16000
MEL_WINDOW_MS = 25
MEL_STEP_MS = 10
MEL_CHANNELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
VAD_WINDOW_MS = 30
VAD_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE = 6  # windows
NORM_TARGET_DBFS = -30
INT16_MAX = (2**15) - 1
N_FFT = SAMPLE_RATE * MEL_WINDOW_MS // 1000
HOP = SAMPLE_RATE * MEL_STEP_MS // 1000


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


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise the clip to -30 dBFS (never lowered), as resemblyzer does."""
    rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
    change = NORM_TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    if change < 0:
        return wav
    scaled: np.ndarray = wav * (10 ** (change / 20))
    return scaled


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    padded = np.concatenate((np.zeros((width - 1) // 2), values, np.zeros(width // 2)))
    summed = np.cumsum(padded, dtype=float)
    summed[width:] = summed[width:] - summed[:-width]
    averaged: np.ndarray = summed[width - 1 :] / width
    return averaged


def trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """The clip with every silence longer than ~0.2 s cut out (webrtcvad, mode 3)."""
    ensure_webrtcvad()
    import webrtcvad  # noqa: PLC0415 - a C extension, loaded with the first clip

    window = VAD_WINDOW_MS * SAMPLE_RATE // 1000
    wav = wav[: len(wav) - (len(wav) % window)]
    pcm = np.round(wav * INT16_MAX).astype("<i2").tobytes()
    vad = webrtcvad.Vad(mode=3)
    flags = np.array(
        [
            vad.is_speech(pcm[start * 2 : (start + window) * 2], sample_rate=SAMPLE_RATE)
            for start in range(0, len(wav), window)
        ],
        dtype=float,
    )
    mask = np.round(_moving_average(flags, VAD_AVERAGE_WIDTH)).astype(bool)
    # scipy's binary_dilation with a centred structure of VAD_MAX_SILENCE + 1 (odd) ones.
    kernel = np.ones(VAD_MAX_SILENCE + 1)
    mask = np.convolve(mask.astype(float), kernel, mode="same") > 0
    trimmed: np.ndarray = wav[np.repeat(mask, window)]
    return trimmed


def preprocess(wav: np.ndarray) -> np.ndarray:
    """resemblyzer's ``preprocess_wav`` for a float32 clip already at 16 kHz."""
    return trim_long_silences(normalize_volume(wav))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = np.asarray(hz, np.float64)
    mel = hz / f_sp
    high = hz >= min_log_hz
    mel[high] = min_log_mel + np.log(hz[high] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    hz = f_sp * mel
    high = mel >= min_log_mel
    hz[high] = min_log_hz * np.exp(logstep * (mel[high] - min_log_mel))
    return hz


@cache
def mel_filters() -> np.ndarray:
    """(40, 201) float32: librosa's ``filters.mel(sr=16000, n_fft=400, n_mels=40)`` (Slaney
    scale and area normalisation)."""
    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0], MEL_CHANNELS + 2
        )
    )
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    weights = np.zeros((MEL_CHANNELS, fft_freqs.size))
    for i in range(MEL_CHANNELS):
        lower = -ramps[i] / widths[i]
        upper = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2 : MEL_CHANNELS + 2] - edges[:MEL_CHANNELS]))[:, np.newaxis]
    filters: np.ndarray = weights.astype(np.float32)
    return filters


@cache
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 power mel spectrogram (not log), as resemblyzer's
    ``wav_to_mel_spectrogram``: centred frames padded with zeros, 25 ms Hann window, 10 ms hop."""
    padded = np.pad(np.asarray(wav, np.float32), N_FFT // 2, mode="constant")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    mel: np.ndarray = (power.astype(np.float32) @ mel_filters().T).astype(np.float32)
    return mel


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[slice]:
    """The mel-frame slices of the partial utterances resemblyzer's ``embed_utterance`` averages
    (1.6 s each, ``rate`` per second; a last one shorter than ``min_coverage`` is dropped)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    starts = list(range(0, steps, frame_step))
    last = starts[-1] * HOP
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return [slice(s, s + PARTIAL_FRAMES) for s in starts]


def partial_mels(speech: np.ndarray) -> np.ndarray:
    """(partials, 160, 40) float32: the mel frames of each partial utterance of ``speech``
    (a preprocessed clip), zero-padded at its end as resemblyzer pads it."""
    slices = partial_slices(len(speech))
    needed = slices[-1].stop * HOP
    if needed >= len(speech):
        speech = np.pad(speech, (0, needed - len(speech)), "constant")
    mel = mel_spectrogram(speech)
    return np.stack([mel[s] for s in slices]).astype(np.float32)
