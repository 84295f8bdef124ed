"""The registry: names resolve to entries, files are checksum-verified, nothing downloads by
default, non-commercial weights need an explicit opt-in, each model is built once, and a model
loaded for a task is of that task's kind."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from persona_core.errors import IntegrityError, InvalidInputError, PersonaCoreError
from persona_core.vision import registry
from persona_core.vision.base import FaceDetector, ModelEntry, WeightFile
from persona_core.vision.entries import WEIGHTS_DIR as CORE_WEIGHTS
from persona_core.vision.errors import (
    ModelChecksumError,
    ModelTaskMismatchError,
    ModelUnavailableError,
    NonCommercialModelError,
    UnknownModelError,
)
from persona_core.vision.registry import (
    TASKS,
    TASKS_WITHOUT_DEFAULT_MODEL,
    default_model_name,
    get_entry,
    list_models,
    load_detector,
    load_model,
    sha256_file,
)
from persona_pipeline.models import load_matter, register_builder_models
from persona_pipeline.models.base import Matter
from persona_pipeline.models.entries import WEIGHTS_DIR as BUILDER_WEIGHTS

pytestmark = pytest.mark.models

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"


def test_unknown_model_name_is_a_typed_error():
    with pytest.raises(UnknownModelError) as info:
        load_model("no-such-model")
    assert isinstance(info.value, PersonaCoreError)
    assert info.value.code == "unknown_model"
    assert "yunet-2023mar-int8" in str(info.value)  # the message lists what is known


def test_every_task_has_one_commercial_offline_default():
    for task in TASKS:
        if task in TASKS_WITHOUT_DEFAULT_MODEL:
            assert not [e for e in list_models(task) if e.default], task
            continue
        defaults = [e for e in list_models(task) if e.default]
        assert len(defaults) == 1, task
        entry = defaults[0]
        assert entry.commercial_use
        assert entry.licence
        assert default_model_name(task) == entry.name
        assert all(len(f.sha256) == 64 for f in entry.files)  # defaults are always pinned


def test_entries_carry_preprocessing_constants_and_licences():
    for entry in list_models():
        assert entry.task in TASKS
        assert entry.preprocessing, entry.name
        assert entry.licence, entry.name
    assert get_entry("openclip-vit-b-32").preprocessing["mean"][0] == pytest.approx(0.48145466)
    assert get_entry("buffalo_l:detect").preprocessing["strides"] == (8, 16, 32)


def test_vendored_weights_match_their_pins_and_stay_small():
    vendored = [(e.weights_dir / f.filename, f) for e in list_models() for f in e.files
                for s in f.sources if s.startswith("vendored:") and e.weights_dir is not None]
    present = [(path, f) for path, f in vendored if path.is_file()]
    assert {f.filename for _, f in present} >= {YUNET_FILE, "u2netp.onnx"}
    for path, wf in present:
        assert sha256_file(path) == wf.sha256
    total = sum(p.stat().st_size for d in (CORE_WEIGHTS, BUILDER_WEIGHTS) for p in d.iterdir() if p.is_file())
    assert total < 15 * 1024 * 1024  # budget in weights/NOTICE.md
    assert "MIT License" in (BUILDER_WEIGHTS / "NOTICE.md").read_text()


def test_loaded_model_records_the_sha256_of_its_weights():
    model = load_model("yunet-2023mar-int8")
    assert model.weights_sha256 == [sha256_file(model.weight_paths[0])]
    assert model.weights_sha256[0] == get_entry("yunet-2023mar-int8").files[0].sha256


def test_model_dir_file_is_preferred_and_its_checksum_verified(tmp_path):
    shutil.copy(CORE_WEIGHTS / YUNET_FILE, tmp_path / YUNET_FILE)
    model = load_model("yunet-2023mar-int8", model_dir=tmp_path)
    assert model.weight_paths[0] == tmp_path / YUNET_FILE
    assert load_model("yunet-2023mar-int8", model_dir=tmp_path) is model  # cached per (name, dir)
    assert load_model("yunet-2023mar-int8") is not model


def test_checksum_mismatch_is_a_typed_error(tmp_path):
    data = bytearray((CORE_WEIGHTS / YUNET_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    (tmp_path / YUNET_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelChecksumError) as info:
        load_model("yunet-2023mar-int8", model_dir=tmp_path)
    assert isinstance(info.value, IntegrityError)
    assert get_entry("yunet-2023mar-int8").files[0].sha256 in str(info.value)


def test_missing_weights_without_download_is_unavailable(tmp_path):
    entry = ModelEntry(
        name="test-missing-weights",
        task="matting",
        backend="onnx_matting",
        files=(WeightFile("nowhere.onnx", "0" * 64, ("https://example.invalid/nowhere.onnx",)),),
        licence="test",
        preprocessing=dict(get_entry("u2netp").preprocessing),
    )
    registry.register(entry, replace_existing=True)
    with pytest.raises(ModelUnavailableError) as info:
        load_model("test-missing-weights", model_dir=tmp_path)
    assert "allow_download" in str(info.value)


def test_noncommercial_entries_need_an_explicit_opt_in(tmp_path):
    entry = get_entry("buffalo_l:identity")
    assert not entry.commercial_use
    with pytest.raises(NonCommercialModelError):
        load_model("buffalo_l:identity", model_dir=tmp_path)
    # With the opt-in the registry goes on to look for the (absent) weights.
    with pytest.raises(ModelUnavailableError):
        load_model("buffalo_l:identity", model_dir=tmp_path, opt_in_noncommercial=True)


def test_register_refuses_duplicates_and_unknown_tasks():
    entry = get_entry("u2netp")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(entry)
    with pytest.raises(ValueError, match="unknown task"):
        registry.register(replace(entry, name="x", task="sing"))


def test_a_model_named_for_another_task_is_a_typed_error():
    """Loading by task gives the task's interface, or refuses a model registered for another."""
    assert isinstance(load_detector(), FaceDetector)
    assert isinstance(load_matter("u2netp"), Matter)
    with pytest.raises(ModelTaskMismatchError) as info:
        load_detector("u2netp")
    assert isinstance(info.value, InvalidInputError)
    assert info.value.code == "model_task_mismatch"
    assert "matting" in str(info.value)


def test_registering_the_builder_models_again_keeps_the_built_ones():
    matter = load_matter()
    register_builder_models()
    assert load_matter() is matter


def test_vendored_files_need_the_folder_they_lie_in():
    entry = replace(get_entry("u2netp"), name="test-vendored-nowhere", weights_dir=None)
    with pytest.raises(ValueError, match="weights_dir"):
        registry.register(entry)
