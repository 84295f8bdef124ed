"""The spec's named backends (InsightFace SCRFD + ArcFace, OpenCLIP ONNX, SpeechBrain ECAPA
ONNX, MODNet) loaded from a local model dir. No real weights ship, so each test writes a tiny
ONNX graph with the real model's input/output signature whose outputs are known in advance,
points the registry at it, and checks the backend's pre/post-processing end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import (
    FACE_COL,
    FACE_DIST,
    FACE_KPS,
    FACE_ROW,
    FACE_STRIDE,
    STRIDES,
    const,
    pooled_linear_graph,
    save,
    write_buffalo_l,
)

from persona_core.vision.align import align_face
from persona_core.vision.base import Detection
from persona_core.vision.registry import get_entry, load_model, sha256_file
from persona_pipeline.models.entries import CLIP_MEAN, CLIP_STD

pytestmark = pytest.mark.models


@pytest.fixture
def buffalo_dir(tmp_path: Path) -> Path:
    return write_buffalo_l(tmp_path)


def test_scrfd_decodes_the_known_face_in_image_pixels(buffalo_dir):
    detector = load_model("buffalo_l:detect", model_dir=buffalo_dir, opt_in_noncommercial=True)
    assert detector.weights_sha256 == [sha256_file(buffalo_dir / "buffalo_l" / "det_10g.onnx")]
    # 960x1280 is fed at half size (640x480 on the 640x640 canvas): coordinates double.
    image = np.full((960, 1280, 3), 90, np.uint8)
    faces = detector.detect(image)
    assert len(faces) == 1  # duplicate suppressed by NMS, 0.3 blip under the threshold
    face = faces[0]
    assert isinstance(face, Detection)
    assert face.score == pytest.approx(0.9)
    cx, cy = FACE_COL * FACE_STRIDE, FACE_ROW * FACE_STRIDE
    d = FACE_DIST * FACE_STRIDE
    expected_box = np.array([cx - d[0], cy - d[1], d[0] + d[2], d[1] + d[3]]) * 2
    np.testing.assert_allclose(face.bbox, expected_box, atol=1e-3)
    expected_kps = (np.array([cx, cy]) + FACE_KPS * FACE_STRIDE) * 2
    np.testing.assert_allclose(face.landmarks, expected_kps, atol=1e-3)
    assert face.landmarks.shape == (5, 2)


def test_scrfd_keeps_both_faces_when_they_do_not_overlap(buffalo_dir):
    detector = load_model("buffalo_l:detect", model_dir=buffalo_dir, opt_in_noncommercial=True)
    outputs = [np.zeros((((640 // s) ** 2) * 2, k), np.float32) for k in (1, 4, 10) for s in STRIDES]
    for cell, score in ((0, 0.7), (200, 0.95)):
        outputs[2][cell] = score  # stride 32 scores
        outputs[5][cell] = [1, 1, 1, 1]
    faces = detector.decode(outputs, scale=1.0)
    assert [round(f.score, 2) for f in faces] == [0.95, 0.7]


def test_arcface_embeds_rgb_normalised_crops(buffalo_dir):
    embedder = load_model("buffalo_l:identity", model_dir=buffalo_dir, opt_in_noncommercial=True)
    assert embedder.dim == 512
    red_bgr = np.zeros((112, 112, 3), np.uint8)
    red_bgr[..., 2] = 255
    grey = np.full((112, 112, 3), 191, np.uint8)
    emb = embedder.embed([red_bgr, grey])
    assert emb.shape == (2, 512)
    # Red -> RGB (1, -1, -1) after (x - 127.5) / 127.5: the channel order and constants show.
    np.testing.assert_allclose(emb[0, :3], np.array([1, -1, -1]) / np.sqrt(3), atol=1e-5)
    np.testing.assert_allclose(emb[1, :3], np.ones(3) / np.sqrt(3), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_scrfd_landmarks_feed_alignment_and_arcface(buffalo_dir):
    detector = load_model("buffalo_l:detect", model_dir=buffalo_dir, opt_in_noncommercial=True)
    embedder = load_model("buffalo_l:identity", model_dir=buffalo_dir, opt_in_noncommercial=True)
    image = np.random.default_rng(1).integers(0, 255, (960, 1280, 3), dtype=np.uint8)
    face = detector.detect(image)[0]
    assert embedder.embed([align_face(image, face.landmarks)]).shape == (1, 512)


def test_insightface_entries_record_noncommercial_licence():
    for pack in ("buffalo_l", "buffalo_s", "antelopev2"):
        for task in ("detect", "identity"):
            entry = get_entry(f"{pack}:{task}")
            assert not entry.commercial_use
            assert "non-commercial" in entry.licence


# --- OpenCLIP -------------------------------------------------------------------------------


def test_openclip_onnx_uses_clip_normalisation(tmp_path):
    weight = np.zeros((3, 512), np.float32)
    weight[0, 0] = weight[1, 1] = weight[2, 2] = 1.0
    path = save(
        pooled_linear_graph("image", ["N", 3, 224, 224], "image_features", weight),
        tmp_path / "openclip" / "vit-b-32-laion2b_s34b_b79k.visual.onnx",
    )
    style = load_model("openclip-vit-b-32", model_dir=tmp_path)
    assert style.weights_sha256 == [sha256_file(path)]
    assert style.dim == 512
    image = np.zeros((300, 500, 3), np.uint8)
    image[...] = (0, 128, 255)  # BGR
    emb = style.embed([image, image])
    assert emb.shape == (2, 512)
    rgb = np.array([255, 128, 0]) / 255.0
    expected = (rgb - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(emb[0, :3], expected / np.linalg.norm(expected), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# --- SpeechBrain ECAPA ----------------------------------------------------------------------


def ecapa_feature_graph(weight: np.ndarray) -> onnx.GraphProto:
    """(N, frames, 80) features -> max over time -> @ weight -> (N, 1, 192), SpeechBrain's shape."""
    nodes = [
        helper.make_node("ReduceMax", ["feats"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["emb2"]),
        helper.make_node("Unsqueeze", ["emb2", "axis1"], ["embedding"]),
    ]
    return helper.make_graph(
        nodes,
        "ecapa_tiny",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["N", "T", 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 1, 192])],
        [const("w", weight), numpy_helper.from_array(np.array([1], np.int64), "axis1")],
    )


def tone(freq: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_ecapa_onnx_on_fbank_features(tmp_path):
    weight = np.random.default_rng(0).normal(size=(80, 192)).astype(np.float32)
    path = save(ecapa_feature_graph(weight), tmp_path / "speechbrain" / "ecapa-voxceleb.onnx")
    voice = load_model("speechbrain-ecapa-voxceleb", model_dir=tmp_path)
    assert voice.takes_features
    assert voice.weights_sha256 == [sha256_file(path)]
    assert voice.dim == 192
    low, high = voice.embed(tone(220)), voice.embed(tone(3000))
    assert low.shape == (192,)
    assert np.linalg.norm(low) == pytest.approx(1.0, abs=1e-5)
    feats = voice.features(tone(220))
    assert feats.shape == (1 + 16000 // 160, 80)  # 10 ms hop, centred frames
    # The tone's energy sits in the mel bands around 220 Hz, not around 3 kHz.
    assert feats.max(axis=0).argmax() < voice.features(tone(3000)).max(axis=0).argmax()
    expected = feats.max(axis=0) @ weight
    np.testing.assert_allclose(low, expected / np.linalg.norm(expected), atol=1e-4)
    assert low @ high < 0.99


def test_ecapa_onnx_on_raw_waveform(tmp_path):
    nodes = [
        helper.make_node("ReduceL2", ["wav"], ["energy"], axes=[1], keepdims=1),
        helper.make_node("MatMul", ["energy", "w"], ["embedding"]),
    ]
    weight = np.linspace(-1, 1, 192, dtype=np.float32)[None]
    graph = helper.make_graph(
        nodes,
        "ecapa_wav_tiny",
        [helper.make_tensor_value_info("wav", TensorProto.FLOAT, ["N", "T"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 192])],
        [const("w", weight)],
    )
    save(graph, tmp_path / "speechbrain" / "ecapa-voxceleb.onnx")
    voice = load_model("speechbrain-ecapa-voxceleb", model_dir=tmp_path)
    assert not voice.takes_features
    emb = voice.embed(tone(440))
    np.testing.assert_allclose(emb, weight[0] / np.linalg.norm(weight[0]), atol=1e-5)


# --- MODNet ---------------------------------------------------------------------------------


def test_modnet_matting_from_a_local_onnx(tmp_path):
    # alpha = sigmoid(10 * normalised red): red pixels are "person", blue ones background.
    weight = np.zeros((1, 3, 1, 1), np.float32)
    weight[0, 0] = 10.0
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["output"]),
        ],
        "modnet_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [const("w", weight)],
    )
    path = save(graph, tmp_path / "modnet" / "modnet_photographic_portrait_matting.onnx")
    matter = load_model("modnet-photographic", model_dir=tmp_path)
    assert matter.weights_sha256 == [sha256_file(path)]
    image = np.zeros((300, 401, 3), np.uint8)
    image[:, :200] = (0, 0, 255)  # red left
    image[:, 200:] = (255, 0, 0)  # blue right
    (alpha,) = matter.mask([image])
    assert alpha.shape == (300, 401)
    assert (alpha[:, :190] > 250).all()
    assert (alpha[:, 210:] < 5).all()
    # MODNet wants both sides a multiple of 32 with the shorter one near 512.
    assert matter.input_size(300, 401) == (512, 672)
