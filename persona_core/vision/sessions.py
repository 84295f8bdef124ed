"""onnxruntime sessions shared by every ONNX backend: provider choice and thread settings.

onnxruntime is imported on first use, so importing this module (and the registry) costs nothing
for a process that never builds a model."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from persona_core.settings import ModelSettings

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


# The distributions that install the `onnxruntime` module: the `cpu` and `gpu` extras.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
ORT_MISSING = "onnxruntime is not installed: pip install 'persona-core[cpu]' (or [gpu] for CUDA)"
# A one-node (Identity) ONNX model: a session on it shows the providers onnxruntime really gives.
_PROBE_MODEL = (
    b'\x08\x07\x12\x00:;\n\x10\n\x01x\x12\x01y"\x08Identity\x12\x05probeZ\x0f\n\x01x\x12\n\n\x08\x08'
    b"\x01\x12\x04\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r"
)


def _ort() -> Any:
    try:
        import onnxruntime  # noqa: PLC0415 - heavy; loaded by the first session, not at import
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":
            raise
        from persona_core.vision.errors import VisionUnavailableError  # noqa: PLC0415

        raise VisionUnavailableError(ORT_MISSING) from None
    return onnxruntime


def onnxruntime_module() -> Any:
    """The onnxruntime module, imported on first use; VisionUnavailableError when not installed."""
    return _ort()


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
    source = str(model) if isinstance(model, Path) else model
    usable = list(usable_providers(providers))
    return ort.InferenceSession(source, sess_options=session_options(), providers=usable)


def usable_providers(providers: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """``providers`` (default: :func:`runtime_providers`) less the ones this onnxruntime build
    lacks; CPU when none is left."""
    chosen = tuple(providers) if providers else runtime_providers()
    available = set(_ort().get_available_providers())
    return tuple(p for p in chosen if p in available) or (CPU,)


def installed_ort_distributions() -> dict[str, str]:
    """The installed distributions of the `onnxruntime` module, name -> version. More than one
    is a broken install: they overwrite each other's files and the last one installed wins."""
    found = {}
    for name in ORT_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def onnxruntime_report(available: Iterable[str] | None = None) -> dict[str, Any]:
    """What onnxruntime gives this process, for ``persona-core info``: the distributions
    installed, the providers the build reports (``available``, default: the installed build's),
    the ones the models ask for, and the ones a session really gets. A CUDA build reports
    CUDAExecutionProvider even where no GPU or CUDA library is there; the session falls back to
    CPU then, and ``gpu`` says so."""
    dists = installed_ort_distributions()
    doc: dict[str, Any] = {
        "distributions": dists,
        "version": None,
        "available": [],
        "requested": [],
        "session": [],
        "gpu": False,
        "problems": [],
    }
    if len(dists) > 1:
        doc["problems"].append(
            f"{' and '.join(dists)} are both installed; they share one `onnxruntime` module, the "
            "last one installed wins: uninstall both, then install persona-core[cpu] or [gpu]"
        )
    if not dists:
        doc["problems"].append(ORT_MISSING)
        return doc
    ort = _ort()
    reported = list(ort.get_available_providers() if available is None else available)
    requested = list(runtime_providers(reported))
    doc |= {"version": ort.__version__, "available": reported, "requested": requested}
    try:
        with warnings.catch_warnings():  # a missing provider is reported below, not warned about
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(
                _PROBE_MODEL, providers=[p for p in requested if p in reported] or [CPU]
            )
        doc["session"] = list(session.get_providers())
    except Exception as exc:  # any failure to make a session is the finding itself
        doc["problems"].append(f"onnxruntime cannot make a session: {exc}")
        return doc
    doc["gpu"] = CUDA in doc["session"]
    if CUDA in requested and not doc["gpu"]:
        doc["problems"].append(
            "this onnxruntime build offers CUDA but a session does not get it "
            "(no GPU, or CUDA/cuDNN libraries missing): models run on CPU"
        )
    return doc
