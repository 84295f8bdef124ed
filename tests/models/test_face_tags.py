"""Anchor tags from the real face mesh and pose models on the fixture photos: head pose reads
near 0 on frontal faces, smiles read happy, a plain close-up is a selfie (never a mirror shot
without a mirror cue), the uploader's tag wins, and ``persona-core qc`` reports all of it per
photo, bad files included."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from persona_cli.common import ExitCode
from persona_cli.main import app
from persona_core.vision.registry import default_model
from persona_pipeline.models import face_measures
from persona_pipeline.steps.config import PipelineConfig
from persona_pipeline.steps.framing import decide_mode
from persona_pipeline.steps.inputs import ImageInput
from persona_pipeline.steps.qc import FaceTaggers, measure, tag_report, verdict

pytestmark = pytest.mark.models

FACES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"
SINGLE = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "biden2.jpg"]


@pytest.fixture(scope="module")
def judged() -> dict[str, dict]:
    config = PipelineConfig()
    detector = default_model("detect")
    taggers = FaceTaggers.default()
    rows = {}
    for name in SINGLE:
        data = (FACES / name).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        m = measure(data, detector, config, taggers)
        rows[name] = {"m": m, "row": verdict(ImageInput(name, sha, f"sha256:{sha}"), m, config)}
    return rows


def test_frontal_faces_read_near_zero_pose_and_open_eyes(judged: dict[str, dict]) -> None:
    """These press photos face the camera: the mesh pose is small and both eyes are open."""
    for name, j in judged.items():
        row = j["row"]
        assert row["passed"], (name, row["reason"])
        assert abs(row["yaw"]) < 20, (name, row["yaw"])
        assert abs(row["pitch"]) < 20, (name, row["pitch"])
        assert row["eye_open"] >= PipelineConfig().min_eye_open, name
        assert row["mesh_score"] > 0.9, name


def test_smiles_read_happy_and_a_closed_mouth_neutral(judged: dict[str, dict]) -> None:
    assert judged["obama.jpg"]["row"]["expression"] == "happy"  # broad smile, teeth showing
    assert judged["biden2.jpg"]["row"]["expression"] == "happy"
    assert judged["obama1.jpg"]["row"]["expression"] == "neutral"  # closed mouth, level brows
    for j in judged.values():
        assert 0.0 <= j["row"]["expression_confidence"] <= 1.0


def test_no_photo_is_filed_as_a_mirror_shot_without_a_mirror_cue(judged: dict[str, dict]) -> None:
    """None of the fixture photos is a mirror selfie: close-ups go to A_SELFIE, half- and
    full-body shots to C_CUTAWAY, each with its evidence."""
    modes = {name: j["row"]["camera_mode"] for name, j in judged.items()}
    assert "B_MIRROR" not in modes.values()
    assert modes["obama1.jpg"] == "A_SELFIE"  # head and shoulders
    assert modes["biden2.jpg"] == "A_SELFIE"
    assert modes["obama3.jpg"] == "C_CUTAWAY"  # full length
    for j in judged.values():
        evidence = json.loads(j["row"]["mode_evidence"])
        wanted = {"face_frac", "frame_below_face", "lowest_body_part", "facing_camera", "mirror_cue"}
        assert wanted <= set(evidence)
        assert evidence["mirror_cue"] < PipelineConfig().mirror_min_cue


def test_the_uploader_tag_wins(judged: dict[str, dict]) -> None:
    config = PipelineConfig()
    m = judged["obama1.jpg"]["m"]
    row = verdict(ImageInput("obama1.jpg", "0" * 64, "sha256:" + "0" * 64, camera_mode="B_MIRROR"), m, config)
    assert (row["camera_mode"], row["mode_source"], row["mode_confidence"]) == ("B_MIRROR", "uploader", 1.0)
    report = tag_report(row, config)
    assert report["camera_mode"]["source"] == "uploader"


def test_a_raised_phone_hand_in_front_of_the_chest_is_a_mirror_cue() -> None:
    """The pose evidence that files B_MIRROR: a wrist between chin and chest, elbow below it."""

    class Pose:
        points = np.zeros((33, 2), np.float32)
        visibility = np.zeros(33, np.float32)

    face = (450.0, 200.0, 100.0, 130.0)  # x, y, w, h in a 1000x1400 frame
    pose = Pose()
    for i, (x, y) in {11: (400, 420), 12: (600, 420), 13: (480, 650), 14: (580, 600),
                      23: (430, 800), 24: (570, 800)}.items():
        pose.points[i], pose.visibility[i] = (x, y), 0.95
    plain = decide_mode(face_bbox=face, width=1000, height=1400, yaw=0.0, pose=pose)
    assert plain.mode == "C_CUTAWAY"
    pose.points[15], pose.visibility[15] = (520, 520), 0.95  # wrist raised in front of the chest
    mirror = decide_mode(face_bbox=face, width=1000, height=1400, yaw=0.0, pose=pose)
    assert mirror.mode == "B_MIRROR"
    assert mirror.evidence["mirror_cue"] >= 0.6
    assert "mirror cue" in mirror.why()


def test_a_low_confidence_expression_is_neutral_with_that_confidence() -> None:
    label, conf = face_measures.decide({"neutral": 0.3, "happy": 0.35, "sad": 0.2, "surprised": 0.1,
                                        "angry": 0.05})
    assert (label, conf) == ("neutral", 0.35)
    assert face_measures.decide({"neutral": 0.1, "happy": 0.9})[0] == "happy"


def test_qc_command_reports_each_photo_with_tags_and_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jpg"
    result = CliRunner().invoke(app, ["--json", "qc", str(FACES / "obama1.jpg"), str(FACES / "corrupt.jpg"),
                                      str(FACES / "two_people.jpg"), str(missing)])
    # Every file gets its entry; one that cannot be read then makes the command exit 2.
    assert result.exit_code == ExitCode.USAGE, result.output
    docs = json.loads(result.stdout[result.stdout.index("["):])
    names = [Path(d["file"]).name for d in docs]
    assert names == ["obama1.jpg", "corrupt.jpg", "two_people.jpg", "missing.jpg"]
    good, corrupt, two, gone = docs
    assert good["passed"] is True
    assert good["reason"] == ""
    for tag in ("expression", "eyes_open", "mouth_closed", "head_pose", "camera_mode"):
        assert set(good[tag]) >= {"value", "confidence"}, tag
        assert 0.0 <= good[tag]["confidence"] <= 1.0
    assert good["camera_mode"]["value"] == "A_SELFIE"
    assert good["camera_mode"]["evidence"]["lowest_body_part"]
    assert set(good["head_pose"]["value"]) == {"yaw", "pitch", "roll"}
    assert corrupt["passed"] is False
    assert corrupt["reason"].startswith("unreadable image")
    assert corrupt["expression"] is None
    assert two["passed"] is False
    assert "face count" in two["reason"]
    assert gone["passed"] is False
    assert gone["reason"].startswith("cannot read file")
    assert [d["readable"] for d in docs] == [True, True, True, False]


def test_qc_of_a_missing_file_exits_2_and_a_corrupt_one_is_a_verdict(tmp_path: Path) -> None:
    """`qc missing.jpg` fails loudly (exit 2, the file named); a corrupt photo is QC's verdict (exit 0)."""
    missing = tmp_path / "missing.jpg"
    result = CliRunner().invoke(app, ["qc", str(missing)])
    assert result.exit_code == ExitCode.USAGE
    assert f"error [unreadable_file]: cannot read 1 of 1 file(s): {missing}" in result.stderr
    result = CliRunner().invoke(app, ["qc", str(FACES / "corrupt.jpg")])
    assert result.exit_code == 0, result.output
    assert "unreadable image" in result.stdout


@pytest.mark.parametrize("name", ["stock_emotions_b_1.jpg", "stock_emotions_b_4.jpg"])
def test_a_photo_with_closed_eyes_is_refused_with_the_reason_named(name: str) -> None:
    """Eyes squeezed shut (labelled eyes_open=0 in the evaluation set): not an anchor."""
    data = (FACES.parent / "tags_eval" / name).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    config = PipelineConfig()
    m = measure(data, default_model("detect"), config, FaceTaggers.default())
    row = verdict(ImageInput(name, sha, f"sha256:{sha}"), m, config)
    assert row["passed"] is False
    assert row["reason"].startswith("eyes closed: eye openness")
