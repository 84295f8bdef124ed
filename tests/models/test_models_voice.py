"""Default voice model (Resemblyzer) on the fixture clips, and clip loading."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from persona_core.vision.errors import BadModelInputError
from persona_core.vision.registry import default_model
from persona_pipeline.models.audio import load_wav

pytestmark = [pytest.mark.models, pytest.mark.slow]

CLIPS = ["a1", "a2", "b1", "b2", "c1", "c2"]


@pytest.fixture(scope="module")
def embeddings(voices_dir):
    voice = default_model("voice")
    return {name: voice.embed(load_wav(voices_dir / f"{name}.wav")) for name in CLIPS}


def test_same_voice_scores_higher_than_any_cross_voice_pair(embeddings):
    for emb in embeddings.values():
        assert emb.shape == (256,)
        assert emb.dtype == np.float32
        assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    same = [embeddings[a] @ embeddings[b] for a, b in (("a1", "a2"), ("b1", "b2"), ("c1", "c2"))]
    cross = [embeddings[a] @ embeddings[b] for a, b in itertools.combinations(CLIPS, 2) if a[0] != b[0]]
    assert min(same) > max(cross)


def test_silence_is_refused():
    voice = default_model("voice")
    with pytest.raises(BadModelInputError):
        voice.embed(np.zeros(16000 * 2, np.float32))
    with pytest.raises(BadModelInputError):
        voice.embed(np.zeros((2, 100), np.float32))


def test_load_wav_resamples_to_mono_16k(voices_dir):
    path = voices_dir / "a1.wav"
    info = sf.info(str(path))
    wav = load_wav(path)
    assert wav.dtype == np.float32
    assert wav.ndim == 1
    assert len(wav) == pytest.approx(info.duration * 16000, rel=1e-3)
    np.testing.assert_allclose(load_wav(path.read_bytes()), wav)


def test_load_wav_mixes_stereo_and_reads_other_rates():
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, stereo, 48000, format="FLAC")
    wav = load_wav(buf.getvalue(), sample_rate=16000)
    assert len(wav) == 16000
    assert np.abs(wav).max() == pytest.approx(0.5, abs=0.02)  # the mean of the two channels


@pytest.mark.parametrize("data", [b"not audio at all", b""])
def test_load_wav_rejects_garbage(data):
    with pytest.raises(BadModelInputError):
        load_wav(data)
