"""onnxruntime sessions shared by every ONNX backend: provider choice and thread settings.

onnxruntime is imported on first use, so importing this module (and the registry) costs nothing
for a process that never builds a model."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from persona_core.settings import ModelSettings

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _ort() -> Any:
    import onnxruntime  # noqa: PLC0415 - heavy; loaded by the first session, not at import

    return onnxruntime


def runtime_providers(available: Iterable[str] | None = None) -> tuple[str, ...]:
    """CUDA first when this onnxruntime build (onnxruntime-gpu) reports it, then CPU.

    ``available`` defaults to what the installed onnxruntime reports."""
    available = set(_ort().get_available_providers() if available is None else available)
    return (CUDA, CPU) if CUDA in available else (CPU,)


def intra_op_threads() -> int:
    """Threads for one model call: every core of a small machine, capped for large ones.

    Larger counts stop paying off for these small models and fight the other processes."""
    override = ModelSettings().model_threads
    if override:
        return override
    return max(1, min(os.cpu_count() or 1, 8))


def session_options() -> Any:
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads()
    opts.inter_op_num_threads = 1  # graphs here are chains; parallel branches buy nothing
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several sessions (detector, identity, style) and OpenCV share a couple of cores: idle
    # ORT workers that spin-wait steal them from whichever model runs next (measured: a
    # detect+identity+style chain went from ~40 ms of work to ~150 ms wall with spinning on).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # the int8 zoo graphs warn about every initializer otherwise
    return opts


def make_session(model: Path | bytes, providers: tuple[str, ...] | None = None) -> Any:
    """An InferenceSession on ``model`` (a path or serialized bytes) with the shared options."""
    ort = _ort()
    chosen = tuple(providers) if providers else runtime_providers()
    available = set(ort.get_available_providers())
    usable = [p for p in chosen if p in available] or [CPU]
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=session_options(), providers=usable)
