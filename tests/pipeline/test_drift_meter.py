"""Drift at run time against packs built through Dagster from the fixture photos: the runtime's
DriftMeter and ``persona-core drift`` judge real faces on each pack's calibrated identity scale,
and the background and flicker scores move the right way on frames made from real photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest
from pipeline_support import FACES, OBAMA, Home, clip_bytes

from persona_core.pack import PersonaPack
from persona_core.runtime import (
    BadFrameError,
    CachedPack,
    DriftMeter,
    IdentityModelMismatchError,
    PackCache,
    StorePackSource,
    anchor_refresh_policy,
)
from persona_core.vision.registry import get_entry
from persona_pipeline.build import build_version
from persona_pipeline.steps.config import PipelineConfig
from registry_api.key_store import ApiKeyStore

pytestmark = [pytest.mark.dagster, pytest.mark.models, pytest.mark.slow]

BIDEN = ["biden.jpg", "biden2.jpg"]
# Any mode will do: the packs here are about identity, not framing.
ANY_MODE = PipelineConfig(required_modes=())


@dataclass
class Packs:
    home: Home
    cache: PackCache
    source: StorePackSource

    def load(self, persona_id: str) -> CachedPack:
        return self.cache.load(persona_id)

    def meter(self, persona_id: str) -> DriftMeter:
        return DriftMeter(self.load(persona_id), self.source)


def loo_persona(k: int) -> str:
    return f"loo-{k}"


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Packs]:
    """``obama`` from the four obama photos; ``loo-k`` from all of them but the k-th."""
    root = tmp_path_factory.mktemp("drift-home")
    home = Home(root)
    with dg.instance_for_test() as instance:
        for persona, photos in [("obama", OBAMA), *((loo_persona(k), [p for p in OBAMA if p != held])
                                                    for k, held in enumerate(OBAMA))]:
            v = home.upload(persona, photos)
            result = build_version(persona, v.version, home.settings, instance, config=ANY_MODE)
            assert result.status.value == "published", result.errors
        source = StorePackSource(home.meta, home.blobs)
        yield Packs(home, PackCache(root / "cache", source), source)


def test_leave_one_out_genuine_faces_pass_and_another_person_fails(packs: Packs) -> None:
    """Each obama photo, held out of a pack built from the others: never fail, at most one in
    ten warn; every biden photo fails against every one of those packs."""
    verdicts = []
    for k, held in enumerate(OBAMA):
        meter = packs.meter(loo_persona(k))
        genuine = meter.measure(FACES / held)
        assert genuine.face_found
        verdicts.append(genuine.identity)
        for other in BIDEN:
            impostor = meter.measure(FACES / other)
            assert impostor.identity == "fail", (held, other, impostor)
            decision = anchor_refresh_policy(1, [impostor.stats], meter.pack)
            assert decision.force_reset
            assert decision.reason == "identity_drift_fail"
    assert "fail" not in verdicts
    assert verdicts.count("warn") <= len(verdicts) // 10


def test_leave_one_out_through_the_cli_json(packs: Packs) -> None:
    """The same verdicts from ``persona-core drift --json`` in a fresh process."""
    exe = Path(sys.executable).with_name("persona-core")
    env = {**os.environ, "PERSONA_HOME": str(packs.home.settings.home)}
    for k, held in enumerate(OBAMA):
        frames = [str(FACES / held), *(str(FACES / b) for b in BIDEN)]
        out = subprocess.run(
            [str(exe), "--json", "drift", *frames, "--persona", loo_persona(k)],
            capture_output=True, text=True, env=env, timeout=180, check=False,
        )
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        rows = {Path(r["frame"]).name: r for r in doc["frames"]}
        assert set(rows[held]) >= {"frame", "face_found", "identity_similarity", "bg_similarity",
                                   "flicker_score", "force_reset", "reason"}
        assert rows[held]["face_found"] is True
        assert rows[held]["identity"] == "ok"
        assert rows[held]["identity_similarity"] >= doc["thresholds"]["identity_drift_warn"]
        for other in BIDEN:
            assert rows[other]["identity"] == "fail"
            assert rows[other]["identity_similarity"] < doc["thresholds"]["identity_drift_fail"]
            assert rows[other]["force_reset"] is True
            assert rows[other]["reason"] == "identity_drift_fail"


def test_fail_on_fail_exits_6_on_the_impostor_and_names_every_missed_criterion(packs: Packs) -> None:
    """Without --fail-on a failing frame is only reported (exit 0); with --fail-on fail the other
    person's photo makes the command exit 6, and the verdict names identity, background and
    flicker, not only the first of them; a genuine photo alone passes --fail-on warn."""
    exe = Path(sys.executable).with_name("persona-core")
    env = {**os.environ, "PERSONA_HOME": str(packs.home.settings.home)}

    def drift(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args, "--persona", "obama"], capture_output=True, text=True,
                              env=env, timeout=180, check=False)

    frames = [str(FACES / "obama.jpg"), str(FACES / "biden.jpg")]
    assert drift("--json", "drift", *frames).returncode == 0
    run = drift("--json", "drift", *frames, "--fail-on", "fail")
    assert run.returncode == 6, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["verdict"], doc["fail_on"]) == ("fail", "fail")
    genuine, impostor = doc["frames"]
    assert (genuine["verdict"], genuine["missed"]) == ("ok", [])
    assert impostor["verdict"] == "fail"
    missed = {m["criterion"]: m for m in impostor["missed"]}
    assert set(missed) == {"identity_drift_fail", "background_drift", "flicker"}
    assert missed["identity_drift_fail"]["observed"] < missed["identity_drift_fail"]["threshold"]
    assert impostor["reason"] == "identity_drift_fail"  # the refresh decision: its first reason

    run = drift("drift", *frames, "--fail-on", "fail")
    assert run.returncode == 6
    assert "error [drift_over_limit]: 1 of 2 frames reach --fail-on fail" in run.stderr
    assert all(name in run.stderr for name in missed)
    assert drift("drift", str(FACES / "obama.jpg"), "--fail-on", "warn").returncode == 0


def test_the_pack_records_its_calibration_and_the_dagster_metadata_shows_it(packs: Packs) -> None:
    pack = packs.load("obama").pack
    cal = pack.refresh_policy.identity_calibration
    assert cal is not None
    assert cal.source == "calibrated"
    assert cal.model == pack.identity.embedding_model
    assert cal.leave_one_out.n == 4
    loo = cal.leave_one_out
    assert loo.min is not None
    assert loo.p5 is not None
    assert loo.median is not None
    assert loo.min <= loo.p5 <= loo.median
    scale = get_entry(pack.identity.embedding_model).identity_scale
    assert scale is not None
    assert cal.impostor is not None
    assert (cal.impostor.p99_9, cal.impostor.pairs) == (scale.impostor_p99_9, scale.impostor_pairs)
    assert "Yale" in cal.impostor.set_name
    assert "ORL" in cal.impostor.set_name
    # The pack's lines are the calibrated ones: fail above the impostors, warn below the genuine.
    assert pack.refresh_policy.identity_drift_fail == cal.identity_drift_fail > scale.impostor_p99_9
    assert cal.identity_drift_fail < pack.refresh_policy.identity_drift_warn <= loo.p5


def test_anchor_sets_metadata_carries_the_calibration(tmp_path: Path) -> None:
    home = Home(tmp_path)
    v = home.upload("obama", OBAMA)
    with dg.instance_for_test() as instance:
        result = build_version("obama", v.version, home.settings, instance, config=ANY_MODE)
    meta = result.metadata["anchor_sets"]
    pack = PersonaPack.model_validate_json(home.blobs.get(home.meta.get_published("obama", 1).pack_ref))
    assert meta["identity_calibration"] == pack.refresh_policy.identity_calibration.model_dump(mode="json")
    assert meta["identity_groups"] == [sorted(OBAMA)]


def test_uploader_thresholds_win_and_too_few_anchors_use_the_model_defaults(tmp_path: Path) -> None:
    home = Home(tmp_path)
    home.meta.create_persona("given", {})
    from persona_core.ingest import submit_version  # noqa: PLC0415

    files = [(n, (FACES / n).read_bytes(), "image") for n in OBAMA]
    v = submit_version(home.meta, home.blobs, "given", files,
                       refresh={"identity_drift_warn": 0.7, "identity_drift_fail": 0.5})
    few = home.upload("few", OBAMA[:2])
    with dg.instance_for_test() as instance:
        build_version("given", v.version, home.settings, instance, config=ANY_MODE)
        build_version("few", few.version, home.settings, instance, config=ANY_MODE)
    given = PersonaPack.model_validate_json(home.blobs.get(home.meta.get_published("given", 1).pack_ref))
    rp = given.refresh_policy
    assert (rp.identity_drift_warn, rp.identity_drift_fail) == (0.7, 0.5)
    assert rp.identity_calibration is not None
    assert rp.identity_calibration.source == "uploader"
    assert rp.identity_calibration.derived_fail == 0.44  # what calibration would have set
    assert "win" in rp.identity_calibration.reason
    small = PersonaPack.model_validate_json(home.blobs.get(home.meta.get_published("few", 1).pack_ref))
    cal = small.refresh_policy.identity_calibration
    assert cal is not None
    assert cal.source == "model_default"
    scale = get_entry(small.identity.embedding_model).identity_scale
    assert scale is not None
    assert (cal.identity_drift_warn, cal.identity_drift_fail) == (scale.default_warn, scale.default_fail)
    assert "2 anchor(s)" in cal.reason


def _frame_of(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES / name))
    assert image is not None
    return image


def test_same_photo_reencoded_or_shifted_is_no_drift(packs: Packs) -> None:
    meter = packs.meter("obama")
    original = _frame_of("obama.jpg")
    ok, jpeg = cv2.imencode(".jpg", original, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    shift = np.float32([[1, 0, 12], [0, 1, 8]])
    shifted = cv2.warpAffine(original, shift, (original.shape[1], original.shape[0]),
                             borderMode=cv2.BORDER_REPLICATE)
    anchor = meter.measure(original).closest_anchor
    meter.reset()
    results = meter.measure_batch([original, jpeg.tobytes(), shifted], anchor_id=anchor)
    th = meter.thresholds
    for r in results:
        assert r.identity == "ok"
        assert r.bg_similarity is not None
        assert r.bg_similarity > 0.8 > th.bg_fail
        assert r.flicker_score is not None
        assert r.flicker_score < 0.3 < th.flicker_fail
        assert not anchor_refresh_policy(1, [r.stats], meter.pack).force_reset


def test_the_face_on_another_background_is_background_drift(packs: Packs) -> None:
    meter = packs.meter("obama")
    original = _frame_of("obama.jpg")
    anchor = meter.measure(original).closest_anchor
    x, y, w, h = (int(v) for v in meter.detector.detect(original)[0].bbox)
    top, bottom, left, right = max(0, y - h // 2), y + h + h // 3, max(0, x - w // 3), x + w + w // 3
    for other in BIDEN:
        frame = cv2.resize(_frame_of(other), (original.shape[1], original.shape[0]))
        frame[top:bottom, left:right] = original[top:bottom, left:right]
        meter.reset()
        r = meter.measure(frame, anchor_id=anchor)
        assert r.identity == "ok"  # the face is still the person's
        assert r.bg_similarity is not None
        assert r.bg_similarity < meter.thresholds.bg_fail
        decision = anchor_refresh_policy(1, [r.stats], meter.pack)
        assert (decision.force_reset, decision.reason) == (True, "background_drift")


def test_two_unrelated_frames_in_a_row_flicker(packs: Packs) -> None:
    meter = packs.meter("obama")
    first, second = meter.measure_batch([FACES / "obama.jpg", FACES / "obama2.jpg"])
    assert first.flicker_score == 0.0  # nothing to compare the first frame with
    assert second.identity == "ok"
    assert second.flicker_score is not None
    assert second.flicker_score > meter.thresholds.flicker_fail
    assert second.closest_anchor == second.reference_anchor  # its own anchor: same background
    assert second.bg_similarity is not None
    assert second.bg_similarity > meter.thresholds.bg_fail
    assert anchor_refresh_policy(1, [second.stats], meter.pack).reason == "flicker"


def test_no_face_is_a_result_and_a_bad_frame_a_typed_error(packs: Packs) -> None:
    meter = packs.meter("obama")
    full_body = _frame_of("obama3.jpg")
    legs = np.ascontiguousarray(full_body[int(full_body.shape[0] * 0.6) :])
    r = meter.measure(legs)
    assert r.face_found is False
    assert r.identity_similarity is None
    assert r.stats is None
    with pytest.raises(BadFrameError):
        meter.measure(FACES / "corrupt.jpg")
    with pytest.raises(BadFrameError):
        meter.measure(b"\x89PNG not really")
    with pytest.raises(BadFrameError):
        meter.measure(np.zeros((4, 4), np.float32))
    batch = meter.measure_batch([FACES / "obama.jpg", FACES / "corrupt.jpg", legs, FACES / "biden.jpg"])
    assert [b.face_found for b in batch] == [True, False, False, True]
    assert batch[1].error_code == "bad_frame"
    assert "not a decodable image" in batch[1].error
    assert batch[2].error == ""
    assert batch[3].identity == "fail"


def test_video_is_sampled_every_n_frames(packs: Packs, tmp_path: Path) -> None:
    meter = packs.meter("obama")
    stills = [cv2.resize(_frame_of(n), (480, 600)) for n in ("obama.jpg", "obama.jpg", "biden.jpg")]
    clip = tmp_path / "render.avi"
    clip.write_bytes(clip_bytes(stills, repeat=4))
    meter.measure(FACES / "biden.jpg")  # an earlier, unrelated stream
    results = meter.measure_video(clip, every=4)
    assert [r.frame.rsplit("#", 1)[1] for r in results] == ["0", "4", "8"]
    assert [r.identity for r in results] == ["ok", "ok", "fail"]
    assert results[0].flicker_score == 0.0  # a video starts its own stream
    assert results[1].flicker_score is not None
    assert results[1].flicker_score < 0.3  # the same still held: no flicker
    with pytest.raises(BadFrameError):
        meter.measure_video(tmp_path / "missing.mp4")


def test_a_pack_built_with_other_identity_weights_is_refused(packs: Packs, tmp_path: Path) -> None:
    cached = packs.load("obama")
    doc = cached.pack
    models = [m.model_copy(update={"weights_sha256": ["0" * 64]}) if m.task == "identity" else m
              for m in doc.provenance.models]
    provenance = doc.provenance.model_copy(update={"models": models})
    forged = doc.model_copy(update={"provenance": provenance}).sealed()

    class OtherWeights:
        def pack_document(self, persona_id: str, version: int | None) -> bytes:
            return forged.canonical_bytes()

        def blob(self, ref: str) -> bytes:
            return packs.source.blob(ref)

    other = PackCache(tmp_path / "cache", OtherWeights()).load("obama", 1)
    with pytest.raises(IdentityModelMismatchError, match="not comparable"):
        DriftMeter(other, OtherWeights())


def test_opencv_and_onnxruntime_load_only_when_a_meter_is_made(packs: Packs) -> None:
    """A fresh process: importing the runtime (DriftMeter included) loads neither; making one does."""
    script = (
        "import json, sys\n"
        "from persona_core.runtime import DriftMeter, PackCache, StorePackSource\n"
        "from persona_core.settings import Settings\n"
        "from persona_core.store.from_settings import open_blob_store, open_metadata_store\n"
        "heavy = lambda: sorted({'cv2', 'onnxruntime'} & {m.split('.')[0] for m in sys.modules})\n"
        "before = heavy()\n"
        "s = Settings()\n"
        "src = StorePackSource(open_metadata_store(s), open_blob_store(s))\n"
        "pack = PackCache(s.resolved_cache_dir / 'packs', src).load('obama')\n"
        "after_load = heavy()\n"
        "DriftMeter(pack, src)\n"
        "print(json.dumps([before, after_load, heavy()]))\n"
    )
    env = {**os.environ, "PERSONA_HOME": str(packs.home.settings.home)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=180, check=True)
    before, after_load, after_meter = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == []
    assert after_load == []
    assert after_meter == ["cv2", "onnxruntime"]


def test_the_viewer_page_shows_the_calibration(packs: Packs) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415 - the api extra, only here

    from registry_api.config import ApiSettings  # noqa: PLC0415
    from registry_api.main import create_app  # noqa: PLC0415
    from registry_api.routes import ui  # noqa: PLC0415

    home = packs.home
    app = create_app(ApiSettings(env="test", home=home.settings.home), metadata=home.meta, blobs=home.blobs)
    ui.register(app)
    key = ApiKeyStore.of(home.meta).create_api_key("viewer", ["read"])[1]
    html = TestClient(app).get("/ui/personas/obama/versions/1", headers={"X-API-Key": key}).text
    cal = packs.load("obama").pack.refresh_policy.identity_calibration
    assert cal is not None
    assert cal.impostor is not None
    assert "Drift thresholds" in html
    assert f"warn below {cal.identity_drift_warn:.4f}, fail below {cal.identity_drift_fail:.4f}" in html
    loo = cal.leave_one_out
    assert f"n {loo.n}, min {loo.min}, p5 {loo.p5}, median {loo.median}" in html
    assert f"{cal.impostor.p99_9} over {cal.impostor.pairs} pairs" in html
    assert "calibrated" in html
