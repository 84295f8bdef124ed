"""Default style (EfficientNet-Lite0 via a cached ONNX export) and matting (u2netp) models on
the real fixture photos."""

from __future__ import annotations

import numpy as np
import pytest

from persona_core.vision.errors import BadModelInputError
from persona_core.vision.registry import cache_dir, default_model

pytestmark = pytest.mark.models

PHOTOS = ["obama.jpg", "obama1.jpg", "biden2.jpg", "two_people.jpg"]


@pytest.fixture(scope="module")
def style():
    return default_model("style")


@pytest.fixture(scope="module")
def matter():
    return default_model("matting")


def test_style_embeddings_are_unit_1280d_and_batch_matches_single(style, read_face):
    images = [read_face(n) for n in PHOTOS]
    batch = style.embed(images)
    assert batch.shape == (4, 1280)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = style.embed([images[0]])[0]
    np.testing.assert_allclose(single, batch[0], atol=1e-4)
    assert style.embed([]).shape == (0, 1280)


def test_style_runs_on_onnxruntime_from_a_cached_export(style):
    assert style.runtime == "onnxruntime"
    exported = list(cache_dir().glob("efficientnet-lite0-features-*.onnx"))
    assert len(exported) == 1
    assert style.weights_sha256[0][:16] in exported[0].name  # keyed by the weights it came from


def test_style_tells_a_photo_from_a_flat_image(style, read_face):
    photo, again, flat = style.embed(
        [
            read_face("obama.jpg"),
            read_face("obama.jpg")[:, ::-1].copy(),
            np.full((300, 300, 3), 128, np.uint8),
        ]
    )
    assert photo @ again > 0.9  # a mirrored photo keeps its look
    assert photo @ flat < photo @ again - 0.2


def test_style_rejects_non_images(style):
    with pytest.raises(BadModelInputError):
        style.embed([np.zeros((20, 20), np.uint8)])


@pytest.mark.parametrize("name", ["obama.jpg", "two_people.jpg"])
def test_mask_covers_the_person_not_the_background(matter, read_face, name):
    detector = default_model("detect")
    image = read_face(name)
    (alpha,) = matter.mask([image])
    assert alpha.shape == image.shape[:2]
    assert alpha.dtype == np.uint8
    for face in detector.detect(image):
        x, y, w, h = (int(v) for v in face.bbox)
        assert (alpha[y : y + h, x : x + w] > 127).mean() > 0.8
    # The top corners of these portraits are wall/curtain: background.
    h, w = alpha.shape
    assert (alpha[: h // 10, : w // 10] > 127).mean() < 0.1
    assert (alpha[: h // 10, -w // 10 :] > 127).mean() < 0.1


def test_masks_keep_each_image_size(matter):
    images = [np.zeros((50, 80, 3), np.uint8), np.full((333, 101, 3), 255, np.uint8)]
    masks = matter.mask(images)
    assert [m.shape for m in masks] == [(50, 80), (333, 101)]
