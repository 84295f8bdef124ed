"""Defect 3: one silent voice clip is rejected with a reason (as a 1-ms clip is) instead of
failing the whole version in the voice model."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from persona_core.refs import sha256_hex
from persona_core.store.local import LocalBlobStore
from persona_core.version_inputs import UploadedInputs
from persona_pipeline.models.audio import load_wav
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.inputs import load_inputs

VOICES = Path(__file__).resolve().parents[1] / "fixtures" / "voices"


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", b"secret-for-tests-0123456789", "http://testserver")


def test_silent_and_tiny_clips_are_rejected_with_reasons(blobs: LocalBlobStore) -> None:
    clips = {
        "speech.wav": (VOICES / "a1.wav").read_bytes(),
        "silent.wav": _wav(np.zeros(16000 * 2)),
        "one_ms.wav": _wav(np.full(16, 1000)),
    }
    files = [
        {"name": n, "ref": blobs.put(d), "sha256": sha256_hex(d), "kind": "voice", "size": len(d)}
        for n, d in clips.items()
    ]
    uploaded = UploadedInputs.model_validate({"files": files})
    got = load_inputs("p", 1, uploaded, blobs, PipelineConfig(), load_wav=load_wav)
    assert [v.name for v in got.voices] == ["speech.wav"]
    assert {r.name: r.reason for r in got.rejected} == {
        "silent.wav": "audio is silent",
        "one_ms.wav": "audio shorter than 0.5 s",
    }
