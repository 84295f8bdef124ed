"""onnxruntime provider choice and session settings shared by the ONNX backends."""

from __future__ import annotations

import pytest

from persona_core.vision import sessions as runtime
from persona_core.vision.registry import load_model
from persona_pipeline.models.entries import WEIGHTS_DIR

pytestmark = pytest.mark.models


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ("CUDAExecutionProvider", "CPUExecutionProvider"),
        ),
        (["AzureExecutionProvider", "CPUExecutionProvider"], ("CPUExecutionProvider",)),
        (
            ["CPUExecutionProvider", "CUDAExecutionProvider"],
            ("CUDAExecutionProvider", "CPUExecutionProvider"),
        ),
    ],
)
def test_cuda_is_preferred_only_when_onnxruntime_has_it(available, expected):
    assert runtime.runtime_providers(available) == expected


def test_a_provider_this_build_lacks_falls_back_to_cpu():
    session = runtime.make_session(
        WEIGHTS_DIR / "u2netp.onnx", ("CUDAExecutionProvider", "CPUExecutionProvider")
    )
    assert session.get_providers()[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in runtime.runtime_providers():
        assert session.get_providers() == ["CPUExecutionProvider"]


def test_sessions_use_the_cores_without_spinning(monkeypatch):
    monkeypatch.delenv("PERSONA_MODEL_THREADS", raising=False)
    opts = runtime.session_options()
    assert 1 <= opts.intra_op_num_threads <= 8
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.setenv("PERSONA_MODEL_THREADS", "1")
    assert runtime.session_options().intra_op_num_threads == 1


def test_models_built_for_other_providers_are_cached_separately():
    cpu = load_model("u2netp", providers=("CPUExecutionProvider",))
    assert cpu.providers == ("CPUExecutionProvider",)
    assert load_model("u2netp", providers=("CPUExecutionProvider",)) is cpu
