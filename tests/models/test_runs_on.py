"""What the models ran on, honestly: the providers a session really got, not the ones asked for.

No GPU here: the CPU build of onnxruntime reports only CPUExecutionProvider, and a CUDA build on a
machine without a usable GPU is what ``onnxruntime_report`` is handed the providers list of."""

from __future__ import annotations

import pytest

from persona_core.pack import ModelRecord
from persona_core.vision import sessions
from persona_core.vision.registry import load_model
from persona_pipeline.steps.assemble import model_records

pytestmark = pytest.mark.models
CUDA_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_a_model_asked_to_run_on_cuda_reports_the_cpu_it_got():
    model = load_model("u2netp", providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    assert model.providers == ("CPUExecutionProvider",)
    # ... and so does the pack's provenance for it.
    (record,) = model_records([model])
    assert record.providers == ["CPUExecutionProvider"]


def test_models_onnxruntime_does_not_run_say_what_does():
    assert load_model("yunet-2023mar-int8").providers == ("opencv:cpu",)


def test_the_report_of_this_cpu_build():
    report = sessions.onnxruntime_report()
    assert set(report["distributions"]) == {"onnxruntime"}
    assert "CUDAExecutionProvider" not in report["available"]
    assert report["requested"] == report["session"] == ["CPUExecutionProvider"]
    assert report["gpu"] is False
    assert report["problems"] == []


def test_a_cuda_build_without_a_gpu_is_reported_as_running_on_cpu():
    report = sessions.onnxruntime_report(CUDA_BUILD)
    assert report["requested"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert report["session"] == ["CPUExecutionProvider"]
    assert report["gpu"] is False
    assert any("models run on CPU" in p for p in report["problems"])


def test_a_pack_built_before_providers_were_recorded_keeps_its_bytes():
    old = ModelRecord(name="u2netp", task="matting", weights_sha256=["0" * 64], licence="Apache-2.0")
    assert "providers" not in old.model_dump(mode="json")
    new = old.model_copy(update={"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    assert new.model_dump(mode="json")["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
