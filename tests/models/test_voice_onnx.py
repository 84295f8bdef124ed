"""The voice model without torch: resemblyzer's preprocessing and mel spectrogram in numpy and
its LSTM exported to ONNX give the embeddings resemblyzer itself gives."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from persona_pipeline.models import load_voice, voice_features
from persona_pipeline.models.audio import load_wav
from persona_pipeline.models.resemblyzer_voice import ensure_webrtcvad

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


@pytest.fixture(scope="module")
def resemblyzer():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ensure_webrtcvad()
        import resemblyzer as module  # noqa: PLC0415
        from resemblyzer.audio import wav_to_mel_spectrogram  # noqa: PLC0415
    return module, wav_to_mel_spectrogram


@pytest.mark.parametrize("name", ["a1.wav", "b2.wav", "c1.wav"])
def test_numpy_preprocessing_and_mels_match_resemblyzer(resemblyzer, name: str) -> None:  # type: ignore[no-untyped-def]
    """Trimmed speech is sample for sample resemblyzer's; mels agree to float32 rounding."""
    module, wav_to_mel = resemblyzer
    wav = load_wav(VOICES / name)
    theirs = module.preprocess_wav(wav, source_sr=16000)
    ours = voice_features.preprocess(wav)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(voice_features.mel_spectrogram(ours), wav_to_mel(theirs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["a1.wav", "a2.wav", "b1.wav"])
def test_onnx_voice_embeddings_match_resemblyzer_on_torch(resemblyzer, name: str) -> None:  # type: ignore[no-untyped-def]
    """The ONNX-exported encoder embeds a real clip as resemblyzer's torch encoder does."""
    module, _ = resemblyzer
    model = load_voice()
    assert model.ran_on() == ("CPUExecutionProvider",)
    wav = load_wav(VOICES / name)
    theirs = module.VoiceEncoder(device="cpu", verbose=False).embed_utterance(
        module.preprocess_wav(wav, source_sr=16000)
    )
    ours = model.embed(wav)
    assert ours.shape == (256,)
    assert float(np.dot(ours, theirs)) > 0.99999
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize(("up", "down"), [(320, 441), (1, 6), (2, 1), (5, 3), (1, 3)])
def test_numpy_resampling_matches_scipy(up: int, down: int) -> None:
    """Clips at 22.05, 44.1, 48, 96 or 8 kHz are resampled to 16 kHz as scipy's
    ``resample_poly`` does, sample for sample to float32 rounding (short clips included)."""
    from scipy.signal import resample_poly as scipy_resample_poly  # noqa: PLC0415

    from persona_pipeline.models.audio import resample_poly  # noqa: PLC0415

    wav, _ = sf.read(VOICES / "a1.wav", dtype="float32")
    for clip in (wav, wav[:5], wav[:1]):
        theirs = scipy_resample_poly(clip, up, down)
        ours = resample_poly(clip, up, down)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
