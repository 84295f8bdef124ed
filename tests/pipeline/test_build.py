"""The builder end to end through Dagster (in-process) on real fixture photos and voices,
with the real offline models: what gets published, rejected, warned about and blocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import dagster as dg
import pytest
from pipeline_support import FACES, FIXTURE_CONFIG, OBAMA, PARTIAL, TWO_FACES, Home, clip_bytes, variant

from persona_core.embeddings import matrix_row
from persona_core.errors import VersionNotFoundError
from persona_core.pack import PersonaPack
from persona_core.refs import parse_ref
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_pipeline.build import BuildResult, build_version
from persona_pipeline.steps.config import PipelineConfig

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def build(home: Home, version: int, instance: dg.DagsterInstance, config: PipelineConfig = FIXTURE_CONFIG,
          persona_id: str = "obama") -> BuildResult:
    return build_version(persona_id, version, home.settings, instance, config=config)


def load_pack(home: Home, persona_id: str, version: int) -> PersonaPack:
    published = home.meta.get_published(persona_id, version)
    return PersonaPack.model_validate_json(home.blobs.get(published.pack_ref))


@pytest.fixture(scope="module")
def fixture_build(
    tmp_path_factory: pytest.TempPathFactory, instance: dg.DagsterInstance
) -> tuple[Home, BuildResult]:
    home = Home(tmp_path_factory.mktemp("fixture-home"))
    corrupt = ("corrupt.jpg", (FACES / "corrupt.jpg").read_bytes(), "image")
    v = home.upload("obama", [*OBAMA, *PARTIAL, *TWO_FACES], ["a1.wav", "a2.wav"], extra=[corrupt])
    return home, build(home, v.version, instance)


def test_fixture_photos_and_voices_publish_a_pack(fixture_build: tuple[Home, BuildResult]) -> None:
    home, result = fixture_build
    assert result.success
    assert result.status == VersionStatus.PUBLISHED
    pack = load_pack(home, "obama", 1)
    assert pack.content_hash == result.metadata["persona_pack"]["content_hash"]
    anchors = {mode.value: [a.anchor_id for a in items] for mode, items in pack.anchor_sets.items()}
    # No photo in the set is a mirror selfie, so none is filed as one.
    assert sorted(anchors) == ["A_SELFIE", "C_CUTAWAY"]
    assert all(len(a) >= 1 for a in anchors.values())
    for items in pack.anchor_sets.values():
        assert [a.canonical for a in items] == [True] + [False] * (len(items) - 1)
        for a in items:
            # Every anchor ref resolves to real bytes: the crop is an image, the row a 128-d vector.
            assert home.blobs.get(a.face_crop_ref)[:4] == b"\x89PNG"
            ident = parse_ref(a.embedding_ref)
            assert matrix_row(home.blobs.get(ident.blob), ident.row or 0).shape == (128,)
    voice = pack.voice_profile
    assert voice is not None
    assert voice.speaker_embedding_ref
    assert voice.embedding_model == "resemblyzer"
    assert {m.task for m in pack.provenance.models} >= {"detect", "identity", "style", "voice"}
    assert all(len(w) == 64 for m in pack.provenance.models for w in m.weights_sha256)
    assert pack.provenance.run_id == result.run_id
    assert {r.name for r in pack.provenance.inputs} >= {*OBAMA, *PARTIAL, *TWO_FACES, "corrupt.jpg", "a1.wav"}


def test_each_mode_records_why_its_canonical_anchor_was_chosen(
    fixture_build: tuple[Home, BuildResult],
) -> None:
    """The canonical anchor carries its choice (only it does); the anchor_sets metadata names
    its file with the same choice, for the run page and the contact sheet."""
    home, result = fixture_build
    pack = load_pack(home, "obama", 1)
    names = {r.sha256: r.name for r in pack.provenance.inputs}
    listed = result.metadata["anchor_sets"]["canonical"]
    assert sorted(listed) == sorted(m.value for m in pack.anchor_sets)
    for mode, (first, *rest) in pack.anchor_sets.items():
        choice = first.metadata.canonical_choice
        assert choice is not None
        assert all(a.metadata.canonical_choice is None for a in rest)
        assert listed[mode.value] == {"file": names[first.source_sha256], **choice.model_dump(mode="json")}
        assert choice.candidates >= len(pack.anchor_sets[mode])
    selfie = listed["A_SELFIE"]
    assert (selfie["file"], selfie["render_ready"], selfie["missed"]) == ("obama1.jpg", True, [])


def test_two_face_photos_are_rejected_for_face_count(fixture_build: tuple[Home, BuildResult]) -> None:
    home, result = fixture_build
    rejected = {r["name"]: r["reason"] for r in result.metadata["qc"]["rejected"]}
    for name in TWO_FACES:
        assert "face count" in rejected[name]
    pack = load_pack(home, "obama", 1)
    records = {r.name: r for r in pack.provenance.inputs}
    assert not records["two_people.jpg"].accepted
    assert "face count 2" in records["two_people.jpg"].reason


def test_corrupt_file_is_rejected_with_a_clear_reason_and_the_rest_builds(
    fixture_build: tuple[Home, BuildResult],
) -> None:
    _home, result = fixture_build
    rejected = {r["name"]: r["reason"] for r in result.metadata["qc"]["rejected"]}
    assert rejected["corrupt.jpg"].startswith("unreadable image: not an image file")
    assert result.status == VersionStatus.PUBLISHED
    assert sum(result.metadata["anchor_sets"]["anchors_per_mode"].values()) >= 3


def test_partial_faces_are_flagged(fixture_build: tuple[Home, BuildResult]) -> None:
    _home, result = fixture_build
    rejected = {r["name"]: r["reason"] for r in result.metadata["qc"]["rejected"]}
    assert all(rejected[n].startswith("partial face") for n in PARTIAL)


def test_outsider_raises_warn_check_and_is_left_out(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    home = Home(tmp_path)
    v = home.upload("obama", [*OBAMA, "biden.jpg"])
    result = build(home, v.version, instance)
    check = result.checks["identity_stability"]
    assert check["severity"] == "WARN"
    assert not check["passed"]
    outliers = check["metadata"]["outliers"]
    assert list(outliers) == ["biden.jpg"]
    assert outliers["biden.jpg"] < check["metadata"]["threshold"]
    assert "biden.jpg" in check["description"]
    assert result.status == VersionStatus.PUBLISHED
    pack = load_pack(home, "obama", v.version)
    biden_sha = next(r.sha256 for r in pack.provenance.inputs if r.name == "biden.jpg")
    assert biden_sha not in {a.source_sha256 for items in pack.anchor_sets.values() for a in items}
    # No voice clips and no behaviour config in this upload: safe defaults, reported.
    assert pack.voice_profile is not None
    assert pack.voice_profile.defaults_applied
    assert pack.behavior_policy.defaults_applied
    assert not result.checks["config_defaults"]["passed"]


def test_too_few_anchors_in_a_required_mode_blocks_publish(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    home = Home(tmp_path)
    v = home.upload("obama", OBAMA)
    strict = PipelineConfig(required_modes=("A_SELFIE", "C_CUTAWAY"),
                            min_anchors_per_mode={"A_SELFIE": 1, "C_CUTAWAY": 2})
    result = build(home, v.version, instance, strict)
    assert not result.checks["enough_anchors"]["passed"]
    assert result.checks["enough_anchors"]["severity"] == "ERROR"
    assert "persona_pack" not in result.materialized
    assert result.status == VersionStatus.BLOCKED
    [reason] = result.record.reasons
    assert reason.startswith("C_CUTAWAY: 1 usable anchor(s), need at least 2; photos by mode: A_SELFIE: ")
    # It says where each photo went and why, and how to tag photos by hand.
    assert "C_CUTAWAY: obama3.jpg (wide framing" in reason
    assert "folder named after the mode" in reason
    assert "camera_mode per file in the upload manifest" in reason
    with pytest.raises(VersionNotFoundError):
        home.meta.get_published("obama", v.version)


def test_publishing_a_blocked_version_alone_is_refused_and_keeps_it_blocked(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """persona_pack materialized on its own (the UI allows it: a blocking check stops only
    its own run) refuses to publish and leaves the version blocked with its reasons."""
    home = Home(tmp_path)
    v = home.upload("obama", OBAMA)
    strict = PipelineConfig(required_modes=("A_SELFIE", "C_CUTAWAY"),
                            min_anchors_per_mode={"A_SELFIE": 1, "C_CUTAWAY": 2})
    blocked = build(home, v.version, instance, strict)
    assert blocked.status == VersionStatus.BLOCKED
    alone = build_version("obama", v.version, home.settings, instance, config=strict,
                          only=["masks", "persona_pack"])
    assert not alone.success
    assert "persona_pack" not in alone.materialized
    [error] = alone.errors
    assert error.startswith("InvalidTransitionError: obama v1 is blocked by the enough_anchors check")
    assert "C_CUTAWAY: 1 usable anchor(s), need at least 2" in error
    record = home.meta.get_version("obama", v.version)
    assert record.status == VersionStatus.BLOCKED
    assert record.reasons == blocked.record.reasons
    assert record.reasons[0].startswith("C_CUTAWAY: 1 usable anchor(s), need at least 2; photos by mode")
    with pytest.raises(VersionNotFoundError):
        home.meta.get_published("obama", v.version)


def test_same_photo_set_gives_the_same_content_hash(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    hashes = []
    for i in range(2):  # two homes: nothing cached between them, every model runs again
        home = Home(tmp_path / f"home{i}")
        v = home.upload("obama", OBAMA)
        hashes.append(build(home, v.version, instance).record.content_hash)
    v2 = home.upload("obama", OBAMA)  # a second version of the same set, from the cache
    hashes.append(build(home, v2.version, instance).record.content_hash)
    assert hashes[0] is not None
    assert len(set(hashes)) == 1


def test_rebuild_with_one_changed_input_recomputes_only_that_input(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    home = Home(tmp_path)
    extra = [("obama_bright.jpg", variant("obama.jpg", "bright"), "image"),
             ("obama2_flip.jpg", variant("obama2.jpg", "flip"), "image")]
    first = build(home, home.upload("obama", OBAMA, extra=extra).version, instance)
    assert first.metadata["qc"]["qc_computed"] == 6
    changed = [extra[0], ("obama2_flip.jpg", variant("obama2.jpg", "dark"), "image")]
    second = build(home, home.upload("obama", OBAMA, extra=changed).version, instance)
    md = second.metadata
    assert (md["qc"]["qc_computed"], md["qc"]["qc_cached"]) == (1, 5)
    assert (md["faces"]["faces_computed"], md["faces"]["faces_cached"]) == (1, 5)
    assert md["face_embeddings"]["face_computed"] == 1
    assert md["style_embeddings"]["style_computed"] == 1
    assert second.status == VersionStatus.PUBLISHED


def test_missing_input_blob_fails_the_version_with_the_reason(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    home = Home(tmp_path)
    v = home.upload("obama", OBAMA)
    gone = v.inputs["files"][0]["ref"]
    home.blobs.blob_path(gone).unlink()  # type: ignore[attr-defined]
    result = build(home, v.version, instance)
    assert not result.success
    assert result.status == VersionStatus.FAILED
    assert "BlobNotFoundError" in result.record.reasons[0]


def test_a_published_version_is_never_rebuilt(fixture_build: tuple[Home, BuildResult],
                                               instance: dg.DagsterInstance) -> None:
    home, first = fixture_build
    before = home.meta.get_version("obama", 1)
    again = build(home, 1, instance)
    # A re-run of a published partition succeeds, builds nothing and says why.
    assert again.success
    assert again.materialized == ()
    assert instance.get_run_by_id(again.run_id).tags["persona/outcome"] == "unchanged"
    [observed] = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("persona_pack"), asset_partitions=["obama.v1"]), limit=1
    ).records
    note = observed.asset_observation.metadata["already_published"].value
    assert note == f"v1 already published as {first.record.content_hash}"
    assert home.meta.get_version("obama", 1) == before
    assert home.meta.get_published("obama", 1).content_hash == first.record.content_hash


@pytest.mark.s3
def test_build_on_an_s3_blob_store_caches_per_input_there(
    s3_settings: Settings, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    db = f"sqlite:///{tmp_path / 'meta.db'}"
    home = Home(tmp_path, s3_settings.model_copy(update={"database_url": db}))
    first = build(home, home.upload("obama", OBAMA).version, instance)
    assert first.status == VersionStatus.PUBLISHED
    second = build(home, home.upload("obama", OBAMA).version, instance)
    assert second.metadata["qc"]["qc_cached"] == len(OBAMA)
    assert second.record.content_hash == first.record.content_hash
    assert any(k.startswith("cache/qc/") for k in home.blobs.list_objects("cache/"))


def test_video_clip_frames_become_candidates_and_the_clip_is_recorded(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """A clip uploaded beside photos is sampled into frames that go through QC like photos;
    the pack's provenance names the clip and every sampled frame."""
    stills = [cv2.resize(cv2.imread(str(FACES / n)), (480, 600)) for n in ("obama1.jpg", "obama2.jpg")]
    clip = ("walk.avi", clip_bytes(stills, repeat=10), "video")  # 2 s, each still held 1 s
    v = home.upload("obama", ["obama.jpg", "obama3.jpg"], extra=[clip])
    result = build(home, v.version, instance)
    assert result.status == VersionStatus.PUBLISHED, result.record.reasons
    pack = load_pack(home, "obama", v.version)
    inputs = {r.name: r for r in pack.provenance.inputs}
    assert inputs["walk.avi"].kind == "video"
    frames = sorted(n for n in inputs if n.startswith("walk.avi@"))
    assert len(frames) == 2, frames  # one per held still: near-duplicate frames dropped
    used_sources = {a.source_sha256 for items in pack.anchor_sets.values() for a in items}
    assert any(inputs[f].sha256 in used_sources for f in frames), "no anchor came from the clip"
