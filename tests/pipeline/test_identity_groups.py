"""Identity groups at build time, on the identity model's calibrated scale: a set of photos of
three people is blocked as "3 people in this set" with each group's files; a set with a clear
majority publishes the majority and names the rest as outliers; two photos of two people are
two people, blocked even with the anchor gate lowered to one photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest
from pipeline_support import FACES, OBAMA, Home

from persona_core.errors import VersionNotFoundError
from persona_core.pack import PersonaPack
from persona_core.store.base import VersionStatus
from persona_core.vision.calibration import FAIL_MARGIN
from persona_core.vision.registry import default_model, default_model_name, get_entry
from persona_pipeline.build import build_version
from persona_pipeline.steps.config import PipelineConfig

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

ANY_MODE = PipelineConfig(required_modes=())


def face_crops(source: str) -> list[tuple[tuple[float, float, float, float], np.ndarray]]:
    """Each face of a group photo, left to right, with the photo."""
    image = cv2.imread(str(FACES / source))
    assert image is not None
    faces = sorted(default_model("detect").detect(image), key=lambda d: d.bbox[0])
    return [(d.bbox, image) for d in faces]


def crop(image: np.ndarray, box: tuple[float, ...], margin: float, flip: bool = False) -> bytes:
    """A head-and-shoulders photo cut around one face of a group photo (one face in frame)."""
    x, y, w, h = box
    x0, x1 = int(max(0, x - margin * w)), int(min(image.shape[1], x + w + margin * w))
    y0, y1 = int(max(0, y - margin * h)), int(min(image.shape[0], y + h + 1.5 * margin * h))
    out = np.ascontiguousarray(image[y0:y1, x0:x1])
    if flip:
        out = np.ascontiguousarray(out[:, ::-1])
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def people_photos() -> dict[str, list[tuple[str, bytes]]]:
    """Photos per person: the obama and biden fixtures plus cut-outs of the group photos, and a
    third person (the man at the right of obama_and_biden.jpg) cut out three ways."""
    (obama_a, img_a), (biden_a, _) = face_crops("two_people.jpg")
    (biden_b, img_b), (obama_b, _), (third, _) = face_crops("obama_and_biden.jpg")
    return {
        "obama": [(n, (FACES / n).read_bytes()) for n in OBAMA]
        + [("obama_cut_a.jpg", crop(img_a, obama_a, 0.7)), ("obama_cut_b.jpg", crop(img_b, obama_b, 0.7))],
        "biden": [(n, (FACES / n).read_bytes()) for n in ("biden.jpg", "biden2.jpg")]
        + [("biden_cut_a.jpg", crop(img_a, biden_a, 0.7)), ("biden_cut_b.jpg", crop(img_b, biden_b, 0.7))],
        "third": [("third_a.jpg", crop(img_b, third, 0.7)), ("third_b.jpg", crop(img_b, third, 1.0)),
                  ("third_c.jpg", crop(img_b, third, 0.8, flip=True))],
    }


def upload(home: Home, persona: str, photos: list[tuple[str, bytes]]) -> int:
    home.meta.create_persona(persona, {})
    files = [(name, data, "image") for name, data in photos]
    return home.upload(persona, extra=files).version


def test_three_people_are_reported_as_three_groups_and_blocked(tmp_path: Path) -> None:
    home = Home(tmp_path)
    people = people_photos()
    version = upload(home, "mixed", [p for photos in people.values() for p in photos])
    with dg.instance_for_test() as instance:
        result = build_version("mixed", version, home.settings, instance, config=ANY_MODE)
    assert result.status == VersionStatus.BLOCKED, result.record.reasons
    reason = next(r for r in result.record.reasons if "people in this set" in r)
    assert reason.startswith("3 people in this set, no clear majority")
    # Every photo QC passed is in exactly one group, each group is one person, and the
    # reason names each group's files.
    groups = result.metadata["anchor_sets"]["identity_groups"]
    person_of = {name: person for person, photos in people.items() for name, _ in photos}
    assert [len({person_of[n] for n in g}) for g in groups] == [1, 1, 1]
    assert {person_of[g[0]] for g in groups} == set(people)
    assert all(len(g) >= 2 for g in groups)
    for k, group in enumerate(groups):
        assert f"group {k + 1} ({len(group)}): {', '.join(group)}" in reason
    check = result.checks["identity_stability"]
    assert check["metadata"]["people"] == 3
    assert not check["passed"]


def test_a_clear_majority_publishes_and_names_the_rest(tmp_path: Path) -> None:
    home = Home(tmp_path)
    people = people_photos()
    version = upload(home, "mostly", people["obama"] + people["biden"][:2])
    with dg.instance_for_test() as instance:
        result = build_version("mostly", version, home.settings, instance, config=ANY_MODE)
    assert result.status == VersionStatus.PUBLISHED, result.record.reasons
    check = result.checks["identity_stability"]
    assert check["metadata"]["people"] == 2
    assert sorted(check["metadata"]["outliers"]) == ["biden.jpg", "biden2.jpg"]
    assert check["description"].startswith("2 people in this set")
    pack = PersonaPack.model_validate_json(home.blobs.get(home.meta.get_published("mostly", 1).pack_ref))
    records = {r.name: r for r in pack.provenance.inputs}
    anchored = {a.source_sha256 for items in pack.anchor_sets.values() for a in items}
    for name in ("biden.jpg", "biden2.jpg"):
        assert not records[name].accepted
        assert records[name].reason.startswith("identity outlier")
        assert records[name].sha256 not in anchored


def test_two_photos_of_two_people_are_two_people_and_never_published(tmp_path: Path) -> None:
    """Two photos are enough to tell two people apart: a pair whose similarity is below the
    identity model's impostor line is "2 people in this set", with no majority to publish, so
    the version is blocked naming both files, even when the anchor gate asks for one photo."""
    home = Home(tmp_path)
    version = home.upload("pair", ["obama1.jpg", "biden2.jpg"]).version
    # Both photos are close-ups (A_SELFIE): one of them would meet this gate on its own.
    lowered = PipelineConfig(required_modes=("A_SELFIE",), min_anchors_per_mode={"A_SELFIE": 1})
    with dg.instance_for_test() as instance:
        result = build_version("pair", version, home.settings, instance, config=lowered)
    assert result.status == VersionStatus.BLOCKED, result.record.reasons
    assert "persona_pack" not in result.materialized
    with pytest.raises(VersionNotFoundError):
        home.meta.get_published("pair", version)
    check = result.checks["identity_stability"]
    meta = check["metadata"]
    assert meta["people"] == 2
    assert meta["groups"] == [["biden2.jpg"], ["obama1.jpg"]]
    assert meta["outliers"] == {}
    scale = get_entry(default_model_name("identity")).identity_scale
    assert scale is not None
    # The line is the model's impostor line (what a pack's identity calibration fails below).
    assert meta["threshold"] == scale.default_fail == round(scale.impostor_p99_9 + FAIL_MARGIN, 2)
    assert meta["scores"]["obama1.jpg"] == meta["scores"]["biden2.jpg"] < meta["threshold"]
    assert not check["passed"]
    # The only reason is the identity verdict, naming both groups and their files.
    [reason] = result.record.reasons
    assert reason.startswith("2 people in this set, no clear majority "
                             "(group 1 (1): biden2.jpg; group 2 (1): obama1.jpg)")
    assert not result.checks["enough_anchors"]["passed"]
    assert result.metadata["anchor_sets"]["anchors_per_mode"]["A_SELFIE"] == 2
