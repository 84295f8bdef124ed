"""The builder's pure steps without Dagster or models: keys, config, geometry, QC rules,
identity stability, video sampling and the per-input cache."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from pipeline_support import FACES, clip_bytes

from persona_core.errors import InvalidInputError
from persona_core.refs import sha256_hex
from persona_core.store.local import LocalBlobStore
from persona_core.version_inputs import UploadedInputs
from persona_core.vision.align import ARCFACE_TEMPLATE_112
from persona_core.vision.registry import default_model
from persona_pipeline.defs.resources import PipelineConfigResource
from persona_pipeline.partition_keys import parse_partition_key, partition_key
from persona_pipeline.steps import geometry
from persona_pipeline.steps.anchors import identity_stability
from persona_pipeline.steps.cache import StepCache
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.inputs import ImageInput, load_inputs
from persona_pipeline.steps.qc import measure, verdict


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", b"secret", "http://127.0.0.1")


def test_partition_keys_round_trip_and_reject_junk() -> None:
    """Key = <persona_id>.v<version>; anything else is a typed error."""
    assert partition_key("demo-obama", 3) == "demo-obama.v3"
    assert parse_partition_key("demo-obama.v3") == ("demo-obama", 3)
    for bad in ("demo", "demo.v0", "Demo.v1", "a.b.v1", ""):
        with pytest.raises(InvalidInputError):
            parse_partition_key(bad)


def test_config_validates_and_the_resource_is_built_from_it() -> None:
    """The resource holds PipelineConfig fields by name (no mirror class): partial Launchpad
    config keeps the defaults for the rest, and a wrong key is a typed error at run start."""
    with pytest.raises(InvalidInputError, match="D_DRONE"):
        PipelineConfig(required_modes=("D_DRONE",))
    with pytest.raises(InvalidInputError, match="unknown pipeline config keys"):
        PipelineConfig.from_dict({"blur": 3})
    assert set(PipelineConfigResource.model_fields) == {"thresholds"}
    custom = PipelineConfig(blur_min=40.0, required_modes=("B_MIRROR",))
    assert PipelineConfigResource.from_config(custom).to_config() == custom
    assert PipelineConfigResource(thresholds={"blur_min": 40.0}).to_config().blur_min == 40.0
    assert PipelineConfigResource().to_config() == PipelineConfig()
    with pytest.raises(InvalidInputError, match="unknown pipeline config keys"):
        PipelineConfigResource(thresholds={"blur": 3}).to_config()
    assert custom.fingerprint("blur_min") != PipelineConfig().fingerprint("blur_min")
    assert custom.fingerprint("workers") == PipelineConfig().fingerprint("workers")


def test_head_pose_from_landmarks() -> None:
    """The template itself is frontal and level; rotating it shows as roll, a shifted nose as yaw."""
    yaw, pitch, roll = geometry.head_pose(ARCFACE_TEMPLATE_112)
    assert abs(yaw) < 3
    assert abs(roll) < 1
    assert abs(pitch) < 15
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert geometry.head_pose(ARCFACE_TEMPLATE_112 @ rot.T)[2] == pytest.approx(20, abs=0.5)
    turned = ARCFACE_TEMPLATE_112.copy()
    turned[2, 0] += 12
    assert geometry.head_pose(turned)[0] > 15


@pytest.mark.parametrize(
    ("bbox", "expected_min", "expected_max"),
    [
        ((400, 100, 240, 330), 0.0, 0.0),  # well inside
        ((0, 87, 193, 330), 0.15, 0.25),  # cut at the left edge: narrower than a face
        ((368, 93, 183, 327), 0.15, 0.3),  # cut at the right edge of a 551 px frame
    ],
)
def test_outside_fraction(bbox: tuple[float, float, float, float], expected_min: float,
                          expected_max: float) -> None:
    assert expected_min <= geometry.outside_fraction(bbox, 551, 1137) <= expected_max


def _measurement(faces: list[tuple[float, float]], **extra: float) -> dict:
    """A QC measurement with faces given as (x, height) boxes, landmarks from the template."""
    out = []
    for x, h in faces:
        scale = h / 112
        lm = ARCFACE_TEMPLATE_112 * scale + np.array([x, 100])
        out.append({"bbox": [x, 100, h * 0.72, h], "landmarks": lm.tolist(), "score": 0.95})
    return {"error": "", "width": 2000, "height": 1500, "faces": out, "blur": 300.0, "luma": 120.0,
            "luma_split": 5.0, "clipped": 0.0, **extra}


@pytest.mark.parametrize(
    ("measurement", "reason_start"),
    [
        ({"error": "not an image file", "width": 0, "height": 0, "faces": []}, "unreadable image"),
        (_measurement([]), "no face found"),
        (_measurement([(300, 300), (1200, 280)]), "face count 2"),
        (_measurement([(300, 300), (1200, 40)]), ""),  # a tiny background face does not count
        (_measurement([(300, 40)]), "face too small"),
        (_measurement([(300, 300)], blur=3.0), "blurry face"),
        (_measurement([(300, 300)], luma=20.0), "face too dark"),
        (_measurement([(300, 300)]), ""),
    ],
)
def test_qc_rules_give_a_reason_for_every_rejection(measurement: dict, reason_start: str) -> None:
    row = verdict(ImageInput("x.jpg", "0" * 64, "sha256:" + "0" * 64), measurement, PipelineConfig())
    assert row["reason"].startswith(reason_start) if reason_start else row["reason"] == ""
    assert row["passed"] == (reason_start == "")


def test_identity_stability_flags_the_outsider_with_a_set_derived_threshold() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal(128)
    vecs = {f"s{i}": base + 0.6 * rng.standard_normal(128) for i in range(5)}
    vecs["x"] = rng.standard_normal(128)
    vecs = {k: (v / np.linalg.norm(v)).astype(np.float32) for k, v in vecs.items()}
    names = {k: f"{k}.jpg" for k in vecs}
    st = identity_stability(vecs, names, PipelineConfig())
    assert list(st.outliers) == ["x.jpg"]
    assert st.threshold >= PipelineConfig().instability_floor
    assert all(st.scores[f"s{i}.jpg"] > st.threshold for i in range(5))


def _people(*people: int, seed: int = 2) -> dict[str, np.ndarray]:
    """Unit vectors named p<person>_<photo>: photos of one person are close, people are not."""
    rng = np.random.default_rng(seed)
    out = {}
    for person, photos in enumerate(people):
        base = rng.standard_normal(128)
        for k in range(photos):
            v = base + 0.6 * rng.standard_normal(128)
            out[f"p{person}_{k}"] = (v / np.linalg.norm(v)).astype(np.float32)
    return out


@pytest.mark.parametrize(
    ("people", "groups", "blocked"),
    [
        ((2,), 1, False),  # a pair of one person: one group, nothing to report
        ((1, 1), 2, True),  # a pair of two people: no majority, never published as one
        ((1, 1, 1), 3, True),  # three photos of three people: no majority either
        ((2, 1), 2, False),  # two of three agree: the third is an outlier
        ((4, 1, 1), 3, False),  # 4 of 6 photos (67 %) and no second group of two: clear
        ((2, 1, 1), 3, True),  # 2 of 4 photos is not a majority, however small the rest
    ],
)
def test_identity_groups_judge_any_set_of_two_or_more_photos(
    people: tuple[int, ...], groups: int, blocked: bool
) -> None:
    """The same verdict from two photos up: the largest group is published (the rest named as
    outliers) only when it holds at least 60 % of the photos and twice the next group of two or
    more; otherwise the set is blocked with every group and its files named."""
    vecs = _people(*people)
    names = {k: f"{k}.jpg" for k in vecs}
    st = identity_stability(vecs, names, PipelineConfig())
    assert st.people == groups
    assert bool(st.blocked_reason) == blocked
    if blocked:
        assert not st.outliers
        assert st.blocked_reason.startswith(f"{groups} people in this set, no clear majority (group 1 (")
        for name in names.values():
            assert name in st.blocked_reason
    else:
        assert sorted(st.outliers) == sorted(n for n in names.values() if not n.startswith("p0_"))


def test_video_is_sampled_into_frames_without_near_duplicates(tmp_path: Path, blobs: LocalBlobStore) -> None:
    names = ("obama.jpg", "obama2.jpg", "biden.jpg")
    stills = [cv2.resize(cv2.imread(str(FACES / n)), (320, 400)) for n in names]
    data = clip_bytes(stills, repeat=10)  # 3 s at 10 fps, each still held for 1 s
    files = [{"name": "clip.avi", "ref": blobs.put(data), "sha256": sha256_hex(data), "kind": "video",
              "size": len(data), "camera_mode": "A_SELFIE"},
             {"name": "broken.mp4", "ref": blobs.put(b"not a video"), "sha256": sha256_hex(b"not a video"),
              "kind": "video", "size": 11}]
    config = PipelineConfig(video_frames_per_second=2.0)  # 6 samples, two of each still
    first = load_inputs("p", 1, UploadedInputs.model_validate({"files": files}), blobs, config)
    assert [i.name for i in first.images] == ["clip.avi@0.00s", "clip.avi@1.00s", "clip.avi@2.00s"]
    assert all(i.camera_mode == "A_SELFIE" and i.source_video == "clip.avi" for i in first.images)
    assert [(r.name, r.reason.split(":")[0]) for r in first.rejected] == [("broken.mp4", "video unreadable")]
    again = load_inputs("p", 2, UploadedInputs.model_validate({"files": files[:1]}), blobs, config)
    assert again.counters == {"frames_computed": 0, "frames_cached": 1}
    assert again.images == first.images


def test_cache_counts_hits_and_recomputes_damaged_entries(blobs: LocalBlobStore) -> None:
    cache = StepCache.for_step(blobs, "qc", config="c1")
    sha = "a" * 64
    assert cache.get_json(sha) is None
    cache.put_json(sha, {"ok": 1}, "x.jpg")
    assert cache.get_json(sha) == {"ok": 1}
    blobs.put_object(cache._key(sha), b"{broken")
    assert cache.get_json(sha) is None
    assert cache.counters() == {"computed": 1, "cached": 1}
    other = StepCache.for_step(blobs, "qc", config="c2")  # another config: its own entries
    assert other.get_json("b" * 64) is None


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_images_over_the_pixel_limit_are_refused_from_the_header() -> None:
    """QC refuses a huge image before decoding it, with the size in the reason; the limit is config."""
    detector = default_model("detect")
    huge = measure(_png_claiming(8_000, 6_000), detector, PipelineConfig())
    assert huge["error"].startswith("image too large: 8000x6000 is over 40,000,000 pixels")
    bomb = measure(_png_claiming(30_000, 30_000), detector, PipelineConfig())
    assert bomb["error"].startswith("image too large")
    photo = (FACES / "obama.jpg").read_bytes()
    assert measure(photo, detector, PipelineConfig())["error"] == ""
    small_limit = PipelineConfig(max_image_pixels=10_000)
    assert measure(photo, detector, small_limit)["error"].startswith("image too large")
