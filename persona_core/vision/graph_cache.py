"""Optimized ONNX graphs kept on disk across processes, so a fresh process skips the work of
turning weights into a runnable graph (SFace's int8 folding, an export from torch) and most of
onnxruntime's own graph optimization.

A cached graph is keyed by the sha256 of the weight files it came from, the recipe that turned
them into a graph, the onnxruntime version and the execution providers: any change to one of
them names another file, so a stale graph is never loaded. The graph is saved at onnxruntime's
hardware-independent level (``ORT_ENABLE_EXTENDED``); the layout transforms specific to this
CPU run again at load, which takes milliseconds. Each file carries the sha256 of its own bytes
and is written to a temporary name and renamed into place, so concurrent processes never read
half a file; one that fails its digest or that onnxruntime refuses is removed and rebuilt from
the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_core.vision.sessions import onnxruntime_module, session_options, usable_providers

log = logging.getLogger(__name__)

MAGIC = b"PCORTG1\n"  # persona-core optimized graph, format 1: MAGIC + sha256(payload) + payload
_DIGEST_BYTES = 32
# Bump when what goes into a cached graph changes in a way its key does not show.
FORMAT = 1


@dataclass(frozen=True)
class CachedSession:
    """An onnxruntime session and how it was made: ``from_cache`` is True when the optimized
    graph at ``path`` was loaded (nothing rebuilt from the weights)."""

    session: Any
    from_cache: bool
    path: Path | None


def graph_key(weights_sha256: tuple[str, ...], recipe: str, providers: tuple[str, ...]) -> str:
    """The cache key of a graph built by ``recipe`` from weights with these sha256s, optimized
    by this onnxruntime for ``providers``."""
    doc = {
        "format": FORMAT,
        "weights": list(weights_sha256),
        "recipe": recipe,
        "onnxruntime": str(onnxruntime_module().__version__),
        "providers": list(providers),
        "level": "extended",
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def graph_path(cache_dir: Path, label: str, key: str) -> Path:
    return cache_dir / "graphs" / f"{label}-{key[:32]}.ortgraph"


def cached_session(
    label: str,
    weights_sha256: tuple[str, ...],
    recipe: str,
    make_graph: Callable[[], Path | bytes],
    *,
    cache_dir: Path | None,
    providers: tuple[str, ...] | None = None,
) -> CachedSession:
    """A session on the graph ``make_graph()`` gives (a path or serialized bytes), from the
    optimized copy in ``cache_dir`` when one with this key is there; ``make_graph`` is called
    only when it is not. ``recipe`` names what ``make_graph`` does to the weights (change it
    when that changes). ``cache_dir`` None: no cache, a plain session."""
    ort = onnxruntime_module()
    chosen = usable_providers(providers)
    if cache_dir is None:
        return CachedSession(_session(ort, make_graph(), chosen), False, None)
    path = graph_path(cache_dir, label, graph_key(weights_sha256, recipe, chosen))
    payload = _read(path)
    if payload is not None:
        try:
            session = _session(ort, payload, chosen)
        except Exception as exc:  # a graph onnxruntime refuses: rebuilt from the weights below
            log.warning("cached graph %s is unusable (%s); rebuilding it from the weights", path, exc)
            path.unlink(missing_ok=True)
        else:
            log.debug("loaded optimized graph %s", path)
            return CachedSession(session, True, path)
    graph = make_graph()
    try:
        payload = _optimize_and_store(ort, graph, chosen, path)
    except OSError as exc:  # a read-only or full cache folder costs time, not the build
        log.warning("cannot write optimized graph %s (%s); building without the cache", path, exc)
        return CachedSession(_session(ort, graph, chosen), False, None)
    log.debug("wrote optimized graph %s", path)
    return CachedSession(_session(ort, payload, chosen), False, path)


def _session(ort: Any, graph: Path | bytes, providers: tuple[str, ...]) -> Any:
    source = str(graph) if isinstance(graph, Path) else graph
    return ort.InferenceSession(source, sess_options=session_options(), providers=list(providers))


def _read(path: Path) -> bytes | None:
    """The graph stored at ``path``; None when there is none, or when it is not whole (the file
    is removed then, to be rebuilt)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read cached graph %s (%s); rebuilding it from the weights", path, exc)
        return None
    head = len(MAGIC) + _DIGEST_BYTES
    payload = data[head:]
    if not data.startswith(MAGIC) or hashlib.sha256(payload).digest() != data[len(MAGIC) : head]:
        log.warning("cached graph %s is corrupt (digest mismatch); rebuilding it from the weights", path)
        path.unlink(missing_ok=True)
        return None
    return payload


def _optimize_and_store(ort: Any, graph: Path | bytes, providers: tuple[str, ...], path: Path) -> bytes:
    """onnxruntime's hardware-independent optimization of ``graph``, stored at ``path``
    atomically; returns the optimized graph."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, raw_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx.part")
    os.close(fd)
    raw = Path(raw_name)
    try:
        opts = session_options()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(raw)
        source = str(graph) if isinstance(graph, Path) else graph
        ort.InferenceSession(source, sess_options=opts, providers=list(providers))
        payload = raw.read_bytes()
    finally:
        raw.unlink(missing_ok=True)
    fd, out_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".part")
    out = Path(out_name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a shared model cache is read by all
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            fh.flush()
            os.fsync(fh.fileno())
        out.replace(path)  # atomic: a reader sees the old file, none, or this whole one
    finally:
        out.unlink(missing_ok=True)
    return payload


def file_session(
    entry_name: str,
    weights_sha256: tuple[str, ...],
    weights: Path,
    cache_dir: Path | None,
    providers: tuple[str, ...] | None = None,
) -> CachedSession:
    """:func:`cached_session` for an ONNX file that runs as it is (no recipe of ours)."""
    return cached_session(
        entry_name, weights_sha256, "onnx-file-v1", lambda: weights, cache_dir=cache_dir, providers=providers
    )
