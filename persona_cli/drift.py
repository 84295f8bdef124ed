"""``persona-core drift``: check rendered frames or clips against a published pack.

Per frame: whether a face was found, the three drift scores (``persona_core.runtime.DriftMeter``)
and what ``anchor_refresh_policy`` decides for that frame given the one before it. A frame that
is not an image is reported with its error; the other frames are still measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, open_stores, out, settings, want_json
from persona_core.runtime import (
    DriftMeter,
    DriftStats,
    FrameDrift,
    PackCache,
    StorePackSource,
    anchor_refresh_policy,
)

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


def measure_inputs(meter: DriftMeter, paths: list[Path], every: int) -> list[FrameDrift]:
    """Photos in one batch (flicker runs through them in the order given); videos sampled."""
    results: list[FrameDrift] = []
    stills: list[Path] = []

    def flush() -> None:
        if stills:
            meter.reset()  # consecutive photos are one sequence; a clip before them is not
            results.extend(meter.measure_batch(list(stills)))
            stills.clear()

    for path in paths:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            flush()
            results.extend(meter.measure_video(path, every=every))
        else:
            stills.append(path)
    flush()
    return results


def frame_rows(results: list[FrameDrift], meter: DriftMeter) -> list[dict[str, Any]]:
    """One document per frame; the refresh decision sees this frame and the previous face's."""
    rows = []
    trend: list[DriftStats] = []
    for r in results:
        row: dict[str, Any] = {
            "frame": r.frame,
            "face_found": r.face_found,
            "identity_similarity": r.identity_similarity,
            "identity": r.identity,
            "bg_similarity": r.bg_similarity,
            "flicker_score": r.flicker_score,
            "closest_anchor": r.closest_anchor,
            "face_box": list(r.face_box) if r.face_box else None,
        }
        stats = r.stats
        if stats is None:
            row |= {"force_reset": None, "reason": r.error_code or "no_face"}
            if r.error:
                row["error"] = r.error
        else:
            trend = [*trend[-1:], stats]
            # Turn 0: the drift rules only; a clip's frames are not the renderer's turns.
            decision = anchor_refresh_policy(0, trend, meter.pack)
            row |= {"force_reset": decision.force_reset, "reason": str(decision.reason)}
        rows.append(row)
    return rows


@handle_errors
def drift(
    frames: Annotated[list[Path], typer.Argument(help="Rendered frames (images) or video clips.")],
    persona: Annotated[str, typer.Option("--persona", "-p", help="Persona id of the published pack.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Pack version (default: newest published).")
    ] = None,
    every: Annotated[int, typer.Option("--every", min=1, help="Sample every N-th video frame.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Measure identity, background and flicker drift of frames against a persona's pack.

    Prints per frame: face_found, identity_similarity (and ok/warn/fail against the pack's
    calibrated lines), bg_similarity, flicker_score, and the refresh decision (force_reset,
    reason). Needs the vision extra (OpenCV, onnxruntime).
    """
    s = settings()
    meta, blobs = open_stores(s)
    source = StorePackSource(meta, blobs)
    pack = PackCache(s.resolved_cache_dir / "packs", source).load(persona, version)
    meter = DriftMeter(pack, source)
    rows = frame_rows(measure_inputs(meter, list(frames), every), meter)
    policy = pack.refresh_policy
    if want_json(json_out):
        emit_json({
            "persona_id": pack.persona_id,
            "version": pack.version,
            "thresholds": {
                "identity_drift_warn": policy.identity_drift_warn,
                "identity_drift_fail": policy.identity_drift_fail,
                "bg_drift_fail": policy.bg_drift_fail,
                "flicker_fail": policy.flicker_fail,
            },
            "frames": rows,
        })
        return
    table = Table(
        title=f"{pack.persona_id} v{pack.version}: identity warn < {policy.identity_drift_warn}, "
        f"fail < {policy.identity_drift_fail}; bg fail < {policy.bg_drift_fail}; "
        f"flicker fail > {policy.flicker_fail}"
    )
    for col in ("frame", "face", "identity", "bg", "flicker", "force_reset", "reason"):
        table.add_column(col)
    for row in rows:
        sim = row["identity_similarity"]
        ident = "" if sim is None else f"{sim:.3f} {row['identity']}"
        table.add_row(
            row["frame"],
            "yes" if row["face_found"] else "no",
            ident,
            "" if row["bg_similarity"] is None else f"{row['bg_similarity']:.3f}",
            "" if row["flicker_score"] is None else f"{row['flicker_score']:.3f}",
            "" if row["force_reset"] is None else str(row["force_reset"]).lower(),
            row.get("error") or row["reason"],
        )
    out().print(table)
