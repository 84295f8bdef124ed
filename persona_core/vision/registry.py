"""The model registry: every model builder and runtime can use, as data, and the factory that builds it.

``load_model(name)`` resolves the entry's weight files (local model dir -> file vendored in the
entry's ``weights_dir`` -> file inside an installed package -> official URL, the last off by
default), verifies each pinned sha256, builds the backend once per process and returns it. The
built model's ``entry`` carries the sha256 of the files actually loaded, for the pack's
provenance. ``load_detector`` / ``load_identity`` return the task's interface and refuse a
model of another task with a typed error (``load_task_model`` is the same check for the
builder's tasks).

The entries here are the face models the runtime loads (``entries.py``). The builder adds its
own (style, matting, voice, tag models) with an explicit call,
``persona_pipeline.models.register_builder_models()``; importing a module registers nothing.
An entry's ``backend`` is a module of this package (``"yunet"``) or a full dotted module path;
the module's ``build(entry, paths, providers, cache_dir)`` makes the model. Importing this
module loads neither onnxruntime nor OpenCV: backends import them when built.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
import threading
import urllib.request
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from persona_core.settings import ModelSettings
from persona_core.vision.base import FaceDetector, IdentityEmbedder, Model, ModelEntry, WeightFile
from persona_core.vision.entries import ENTRIES
from persona_core.vision.errors import (
    ModelChecksumError,
    ModelTaskMismatchError,
    ModelUnavailableError,
    NonCommercialModelError,
    UnknownModelError,
)
from persona_core.vision.sessions import runtime_providers

# Every task a pack's provenance can name; add one together with its backend interface.
TASKS = ("detect", "identity", "style", "matting", "voice", "face_mesh", "pose", "expression")
# Tasks whose default is computed without a model file (expression: from the face mesh).
TASKS_WITHOUT_DEFAULT_MODEL = ("expression",)
VENDORED = "vendored:"

_REGISTRY: dict[str, ModelEntry] = {e.name: e for e in ENTRIES}
_CACHE: dict[tuple[str, str | None, tuple[str, ...]], Model] = {}
_LOCK = threading.RLock()


def register(entry: ModelEntry, *, replace_existing: bool = False) -> None:
    """Add a model entry (e.g. a locally exported ONNX model) to this process's registry."""
    if entry.task not in TASKS:
        raise ValueError(f"unknown task {entry.task!r}; expected one of {TASKS}")
    if entry.weights_dir is None and any(s.startswith(VENDORED) for f in entry.files for s in f.sources):
        raise ValueError(f"model {entry.name!r} names vendored files but no weights_dir")
    with _LOCK:
        if entry.name in _REGISTRY and not replace_existing:
            raise ValueError(f"model {entry.name!r} is already registered")
        _REGISTRY[entry.name] = entry
        for key in [k for k in _CACHE if k[0] == entry.name]:
            del _CACHE[key]


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def list_models(task: str | None = None) -> list[ModelEntry]:
    return [e for e in _REGISTRY.values() if task is None or e.task == task]


def default_model_name(task: str) -> str:
    for entry in _REGISTRY.values():
        if entry.task == task and entry.default:
            return entry.name
    raise UnknownModelError(f"no default model for task {task!r}; tasks: {', '.join(TASKS)}")


def default_model(task: str, model_dir: Path | str | None = None,
                  providers: tuple[str, ...] | None = None) -> Model:
    """The task's default (offline, commercially usable) model, built once per process."""
    return load_model(default_model_name(task), model_dir=model_dir, providers=providers)


def model_dir_from_env() -> Path | None:
    """``PERSONA_MODEL_DIR`` (read by the settings module), or None."""
    return ModelSettings().model_dir


def cache_dir(model_dir: Path | None = None) -> Path:
    """Where derived files (exported/pruned ONNX, downloads) go: under the model dir when one is
    given, else ``PERSONA_MODEL_CACHE`` or ``~/.cache/persona-core/models``."""
    return ModelSettings().model_cache_for(model_dir)


def load_model(
    name: str,
    model_dir: Path | str | None = None,
    allow_download: bool = False,
    providers: tuple[str, ...] | None = None,
    *,
    opt_in_noncommercial: bool = False,
) -> Model:
    """Build (once per process) the model ``name``; see the module docstring for resolution.

    Raises UnknownModelError, NonCommercialModelError (entry not for commercial use and no
    ``opt_in_noncommercial``), ModelUnavailableError (no usable source) or ModelChecksumError."""
    entry = get_entry(name)
    if not entry.commercial_use and not opt_in_noncommercial:
        raise NonCommercialModelError(
            f"model {name!r} is licensed {entry.licence}; pass opt_in_noncommercial=True to use it"
        )
    root, chosen, key = _cache_key(name, model_dir, providers)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        paths, files = [], []
        for wf in entry.files:
            path, digest = resolve_file(wf, root, weights_dir=entry.weights_dir,
                                        allow_download=allow_download)
            paths.append(path)
            files.append(replace(wf, sha256=digest))
        resolved = replace(entry, files=tuple(files))
        module = backend_module(entry)
        model: object = importlib.import_module(module).build(resolved, paths, chosen, cache_dir(root))
        if not isinstance(model, Model):
            raise TypeError(f"{module}.build made a {type(model).__name__}, not a Model")
        model.entry = resolved
        model.providers = model.ran_on()
        model.weight_paths = tuple(paths)
        _CACHE[key] = model
        return model


def is_built(
    task: str,
    name: str = "",
    model_dir: Path | str | None = None,
    providers: tuple[str, ...] | None = None,
) -> bool:
    """Whether this process has built the task's model ``name`` ("" = the default) for
    ``model_dir`` already, so that loading it is instant; a builder says "loading models"
    only for the ones that are not."""
    entry = get_entry(name or default_model_name(task))
    with _LOCK:
        return _cache_key(entry.name, model_dir, providers)[2] in _CACHE


def _cache_key(
    name: str, model_dir: Path | str | None, providers: tuple[str, ...] | None
) -> tuple[Path | None, tuple[str, ...], tuple[str, str | None, tuple[str, ...]]]:
    root = Path(model_dir).expanduser().resolve() if model_dir else model_dir_from_env()
    chosen = tuple(providers) if providers else runtime_providers()
    return root, chosen, (name, str(root) if root else None, chosen)


def load_task_model(
    task: str,
    name: str = "",
    model_dir: Path | str | None = None,
    *,
    allow_download: bool = False,
    providers: tuple[str, ...] | None = None,
    opt_in_noncommercial: bool = False,
) -> Model:
    """The model ``name`` ("" = the task's default), built once per process; its task's
    loader (``load_detector``, ...) checks that it is of the task's kind.

    Raises ModelTaskMismatchError for a model registered for another task, and whatever
    ``load_model`` raises."""
    entry = get_entry(name or default_model_name(task))
    if entry.task != task:
        raise ModelTaskMismatchError(f"model {entry.name!r} is a {entry.task} model, not a {task} model")
    return load_model(entry.name, model_dir, allow_download, providers,
                      opt_in_noncommercial=opt_in_noncommercial)


def wrong_kind(model: Model, expected: str) -> ModelTaskMismatchError:
    """The error for a backend that built another kind of model than its task's."""
    built = type(model).__name__
    return ModelTaskMismatchError(f"model {model.entry.name!r} built a {built}, not a {expected}")


def load_detector(
    name: str = "",
    model_dir: Path | str | None = None,
    *,
    providers: tuple[str, ...] | None = None,
    opt_in_noncommercial: bool = False,
) -> FaceDetector:
    """The face detector ``name`` ("" = the offline default), built once per process."""
    model = load_task_model("detect", name, model_dir, providers=providers,
                            opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, FaceDetector):
        raise wrong_kind(model, "FaceDetector")
    return model


def load_identity(
    name: str = "",
    model_dir: Path | str | None = None,
    *,
    providers: tuple[str, ...] | None = None,
    opt_in_noncommercial: bool = False,
) -> IdentityEmbedder:
    """The identity embedder ``name`` ("" = the offline default), built once per process."""
    model = load_task_model("identity", name, model_dir, providers=providers,
                            opt_in_noncommercial=opt_in_noncommercial)
    if not isinstance(model, IdentityEmbedder):
        raise wrong_kind(model, "IdentityEmbedder")
    return model


def backend_module(entry: ModelEntry) -> str:
    """The importable module that builds ``entry``."""
    return entry.backend if "." in entry.backend else f"{__package__}.{entry.backend}"


def clear_cache() -> None:
    """Forget built models (tests; a long-lived process that swaps its model dir)."""
    with _LOCK:
        _CACHE.clear()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _candidates(wf: WeightFile, model_dir: Path | None, weights_dir: Path | None) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if model_dir is not None:
        for rel in dict.fromkeys((wf.filename, Path(wf.filename).name)):
            found.append(("model_dir", model_dir / rel))
    for source in wf.sources:
        if source.startswith(VENDORED) and weights_dir is not None:
            found.append((source, weights_dir / source.removeprefix(VENDORED)))
        elif source.startswith("package:"):
            dist_name, _, inner = source.removeprefix("package:").partition("/")
            try:
                dist = metadata.distribution(dist_name)
            except metadata.PackageNotFoundError:
                continue
            found.append((source, Path(str(dist.locate_file(inner)))))
    return found


def resolve_file(
    wf: WeightFile,
    model_dir: Path | None,
    *,
    weights_dir: Path | None = None,
    allow_download: bool = False,
) -> tuple[Path, str]:
    """The first existing source of ``wf`` and its sha256, verified against a pinned digest;
    ``weights_dir`` is where its entry keeps ``vendored:`` files.

    A file that exists but hashes wrong is an error, not a reason to try the next source: a
    user who put a file in the model dir must learn it is not the one the entry names."""
    for origin, path in _candidates(wf, model_dir, weights_dir):
        if not path.is_file():
            continue
        digest = sha256_file(path)
        if wf.sha256 and digest != wf.sha256:
            raise ModelChecksumError(
                f"{path} ({origin}) has sha256 {digest}, registry pins {wf.sha256} for {wf.filename}"
            )
        return path, digest
    urls = [s for s in wf.sources if s.startswith("https://")]
    if allow_download and urls:
        return _download(wf, urls, cache_dir(model_dir) / "downloads")
    where = f"model dir {model_dir}" if model_dir else "no model dir (PERSONA_MODEL_DIR unset)"
    hint = "; allow_download=True would fetch it" if urls else ""
    raise ModelUnavailableError(
        f"weight file {wf.filename!r} not found ({where}, sources {wf.sources}){hint}"
    )


def _download(wf: WeightFile, urls: list[str], target_dir: Path) -> tuple[Path, str]:
    target = target_dir / Path(wf.filename).name
    if target.is_file():
        digest = sha256_file(target)
        if not wf.sha256 or digest == wf.sha256:
            return target, digest
    target_dir.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=target_dir, suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - https only
                shutil.copyfileobj(resp, out)
            digest = sha256_file(tmp)
            if wf.sha256 and digest != wf.sha256:
                raise ModelChecksumError(f"download {url} has sha256 {digest}, registry pins {wf.sha256}")
            tmp.replace(target)
            return target, digest
        except OSError as exc:
            errors.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise ModelUnavailableError(f"could not download {wf.filename}: {'; '.join(errors)}")
