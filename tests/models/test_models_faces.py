"""Default face models on the real fixture photos: YuNet finds the faces, ArcFace alignment
gives canonical crops, SFace tells the same person from a different one."""

from __future__ import annotations

import numpy as np
import pytest

from persona_core.vision.align import ARCFACE_TEMPLATE_112, align_face, alignment_matrix
from persona_core.vision.base import Detection
from persona_core.vision.errors import BadModelInputError
from persona_core.vision.registry import default_model, load_model

pytestmark = pytest.mark.models

SINGLE = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "biden2.jpg"]


@pytest.fixture(scope="module")
def detector():
    return default_model("detect")


@pytest.fixture(scope="module")
def embedder():
    return default_model("identity")


@pytest.fixture(scope="module")
def embed_first_face(detector, embedder, read_face):
    def run(name: str) -> np.ndarray:
        image = read_face(name)
        face = detector.detect(image)[0]
        return embedder.embed([align_face(image, face.landmarks)])[0]

    return run


@pytest.mark.parametrize("name", SINGLE)
def test_one_face_in_each_portrait(detector, read_face, name):
    image = read_face(name)
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.bbox
    assert x >= 0
    assert y >= 0
    assert x + w <= image.shape[1]
    assert y + h <= image.shape[0]
    assert face.landmarks.shape == (5, 2)
    # Landmarks in full-image pixels (the detector runs downscaled): eyes above mouth, inside box.
    assert ((face.landmarks[:, 0] > x) & (face.landmarks[:, 0] < x + w)).all()
    assert face.landmarks[:2, 1].max() < face.landmarks[3:, 1].min()
    assert 0.8 <= face.score <= 1.0


def test_two_faces_in_two_people(detector, read_face):
    faces = detector.detect(read_face("two_people.jpg"))
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score


def test_obama_and_biden_are_both_found_and_told_apart(detector, embedder, read_face, embed_first_face):
    image = read_face("obama_and_biden.jpg")
    faces = detector.detect(image)
    # The photo really holds three faces: the two men and a girl at the bottom right edge.
    assert len(faces) == 3
    crops = [align_face(image, f.landmarks) for f in faces]
    emb = embedder.embed(crops)
    obama, biden = embed_first_face("obama.jpg"), embed_first_face("biden.jpg")
    best_obama = int(np.argmax(emb @ obama))
    best_biden = int(np.argmax(emb @ biden))
    assert best_obama != best_biden
    assert emb[best_obama] @ obama > 0.5
    assert emb[best_biden] @ biden > 0.5
    # Obama stands to the right of Biden in this photo.
    assert faces[best_obama].bbox[0] > faces[best_biden].bbox[0]


@pytest.mark.parametrize("shape", [(480, 640, 3), (32, 32, 3), (3000, 200, 3)])
def test_no_face_in_blank_images(detector, shape):
    assert detector.detect(np.zeros(shape, np.uint8)) == []
    assert detector.detect(np.full(shape, 180, np.uint8)) == []


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "img"])
def test_detector_rejects_non_images(detector, bad):
    with pytest.raises(BadModelInputError):
        detector.detect(bad)


def test_same_person_scores_higher_than_different(embed_first_face):
    obama = [embed_first_face(n) for n in ("obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg")]
    biden = [embed_first_face(n) for n in ("biden.jpg", "biden2.jpg")]
    same = [float(a @ b) for i, a in enumerate(obama) for b in obama[i + 1 :]] + [float(biden[0] @ biden[1])]
    cross = [float(a @ b) for a in obama for b in biden]
    assert min(same) > 0.5
    assert max(cross) < 0.35
    assert min(same) > max(cross) + 0.2


def test_identity_embeddings_are_unit_128d_and_batched(embedder, detector, read_face):
    image = read_face("two_people.jpg")
    crops = [align_face(image, f.landmarks) for f in detector.detect(image)]
    batch = embedder.embed(crops)
    assert batch.shape == (2, 128)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([embedder.embed([c]) for c in crops])
    np.testing.assert_allclose(batch, singles, atol=1e-4)
    assert embedder.embed([]).shape == (0, 128)


def test_identity_rejects_unaligned_crops(embedder):
    with pytest.raises(BadModelInputError):
        embedder.embed([np.zeros((100, 100, 3), np.uint8)])


def test_align_face_puts_landmarks_on_the_arcface_template():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)
    # The template, rotated by 20 degrees, scaled 2.5x and shifted: alignment must undo it.
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * 2.5
    landmarks = (ARCFACE_TEMPLATE_112 @ rot.T + [60, 80]).astype(np.float32)
    matrix = alignment_matrix(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE_112, atol=0.05)
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3)
    assert crop.dtype == np.uint8
    assert align_face(image, landmarks, size=224).shape == (224, 224, 3)


def test_align_face_rejects_bad_landmarks():
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(BadModelInputError):
        align_face(image, np.zeros((4, 2), np.float32))
    with pytest.raises(BadModelInputError):
        align_face(image, np.full((5, 2), np.nan, np.float32))


def test_detections_are_frozen_records(detector, read_face):
    face = detector.detect(read_face("obama.jpg"))[0]
    assert isinstance(face, Detection)
    assert load_model("yunet-2023mar-int8") is detector  # built once per process
