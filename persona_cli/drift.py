"""``persona-core drift``: check rendered frames or clips against a published pack.

Per frame: whether a face was found, the three drift scores (``persona_core.runtime.DriftMeter``),
what ``anchor_refresh_policy`` decides for that frame given the one before it (its first reason),
and every criterion the frame misses with its level, so a verdict names all of them. A frame that
is not an image is reported with its error; the other frames are still measured. ``--fail-on``
turns the worst verdict into an exit code for scripts and CI.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import (
    ExitCode,
    JsonOpt,
    emit_json,
    fail,
    handle_errors,
    open_stores,
    out,
    settings,
    want_json,
)
from persona_core.pack import RefreshPolicy

if TYPE_CHECKING:
    from persona_core.runtime import DriftMeter, DriftStats, FrameDrift

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


class Level(StrEnum):
    """A frame's verdict, worst criterion first; ``--fail-on`` names the level that fails a run."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class FailOn(StrEnum):
    """The verdict level at which ``--fail-on`` exits non-zero."""

    WARN = "warn"
    FAIL = "fail"


_RANK = {Level.OK: 0, Level.WARN: 1, Level.FAIL: 2}
# Refresh reasons that judge a run of frames rather than one; they warn (the frame itself is
# above the fail lines, or identity_drift_fail would be named).
_SEQUENCE_REASONS = ("identity_drift_sustained", "identity_drift_trend")


def missed_criteria(r: FrameDrift, policy: RefreshPolicy,
                    decision_reason: str | None) -> list[dict[str, Any]]:
    """Every criterion the frame misses, each with its level, observed value and line: an
    unreadable frame fails, a frame without a face warns, and a measured frame is held to the
    pack's identity warn / fail lines, its background and flicker fail lines, and the refresh
    policy's sequence rules."""
    if r.error:
        return [{"criterion": r.error_code or "bad_frame", "level": Level.FAIL, "observed": None,
                 "threshold": None}]
    if not r.face_found or r.identity_similarity is None:
        return [{"criterion": "no_face", "level": Level.WARN, "observed": None, "threshold": None}]
    missed = []
    ident = r.identity_similarity
    if ident < policy.identity_drift_fail:
        missed.append(("identity_drift_fail", Level.FAIL, ident, policy.identity_drift_fail))
    elif ident < policy.identity_drift_warn:
        missed.append(("identity_drift_warn", Level.WARN, ident, policy.identity_drift_warn))
    if r.bg_similarity is not None and r.bg_similarity < policy.bg_drift_fail:
        missed.append(("background_drift", Level.FAIL, r.bg_similarity, policy.bg_drift_fail))
    if r.flicker_score is not None and r.flicker_score > policy.flicker_fail:
        missed.append(("flicker", Level.FAIL, r.flicker_score, policy.flicker_fail))
    if decision_reason in _SEQUENCE_REASONS:
        missed.append((decision_reason, Level.WARN, ident, policy.identity_drift_warn))
    return [{"criterion": name, "level": level, "observed": round(observed, 4), "threshold": line}
            for name, level, observed, line in missed]


def worst(levels: list[Level]) -> Level:
    return max(levels, key=_RANK.__getitem__, default=Level.OK)


def _missed_text(missed: list[dict[str, Any]]) -> str:
    parts = []
    for m in missed:
        if m["observed"] is None:
            parts.append(m["criterion"])
        else:
            sign = ">" if m["criterion"] == "flicker" else "<"
            parts.append(f"{m['criterion']} ({m['observed']:.3f} {sign} {m['threshold']})")
    return "; ".join(parts)


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


def frame_rows(results: list[FrameDrift], meter: DriftMeter, policy: RefreshPolicy) -> list[dict[str, Any]]:
    """One document per frame; the refresh decision sees this frame and the previous face's;
    ``missed`` lists every criterion the frame misses and ``verdict`` is the worst of them."""
    rows = []
    from persona_core.runtime import anchor_refresh_policy  # noqa: PLC0415 - see drift()

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
        missed = missed_criteria(r, policy, row["reason"])
        row |= {"verdict": worst([m["level"] for m in missed]), "missed": missed}
        rows.append(row)
    return rows


@handle_errors
def drift(  # noqa: PLR0917 - typer maps each parameter to an option
    frames: Annotated[list[Path], typer.Argument(help="Rendered frames (images) or video clips.")],
    persona: Annotated[str, typer.Option("--persona", "-p", help="Persona id of the published pack.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Pack version (default: newest published).")
    ] = None,
    every: Annotated[int, typer.Option("--every", min=1, help="Sample every N-th video frame.")] = 1,
    fail_on: Annotated[
        FailOn | None,
        typer.Option("--fail-on", help="Exit 6 when any frame's verdict is this level or worse "
                     "(warn: any frame not ok; fail: a frame over a fail line or unreadable)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Measure identity, background and flicker drift of frames against a persona's pack.

    Prints per frame: face_found, identity_similarity (and ok/warn/fail against the pack's
    calibrated lines), bg_similarity, flicker_score, the refresh decision (force_reset,
    reason) and the verdict with every criterion the frame misses: identity below the warn or
    fail line, background below its fail line, flicker above its, drift sustained or trending
    (warn), no face (warn), an unreadable frame (fail). With --fail-on warn|fail it exits 6
    when a frame's verdict reaches that level. Needs the vision extra (OpenCV, onnxruntime).
    """
    # The runtime (~0.3 s of imports) only for this command, not for every other CLI command.
    from persona_core.runtime import DriftMeter, PackCache, StorePackSource  # noqa: PLC0415

    s = settings()
    meta, blobs = open_stores(s)
    source = StorePackSource(meta, blobs)
    pack = PackCache(s.resolved_cache_dir / "packs", source).load(persona, version)
    meter = DriftMeter(pack, source)
    policy = pack.refresh_policy
    rows = frame_rows(measure_inputs(meter, list(frames), every), meter, policy)
    verdict = worst([r["verdict"] for r in rows])
    over = [r for r in rows if fail_on is not None and _RANK[r["verdict"]] >= _RANK[Level(fail_on)]]
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
            "verdict": verdict,
            "fail_on": fail_on,
            "frames": rows,
        })
        if over:
            raise typer.Exit(int(ExitCode.DRIFT))  # the document says which frames; keep it one
        return
    table = Table(
        title=f"{pack.persona_id} v{pack.version}: identity warn < {policy.identity_drift_warn}, "
        f"fail < {policy.identity_drift_fail}; bg fail < {policy.bg_drift_fail}; "
        f"flicker fail > {policy.flicker_fail}"
    )
    for col in ("frame", "face", "identity", "bg", "flicker", "force_reset", "reason", "verdict", "missed"):
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
            row["verdict"].value,
            _missed_text(row["missed"]),
        )
    out().print(table)
    if over and fail_on is not None:
        named = "; ".join(f"{r['frame']}: {_missed_text(r['missed'])}" for r in over[:5])
        more = f" (and {len(over) - 5} more)" if len(over) > 5 else ""
        fail(ExitCode.DRIFT, "drift_over_limit", f"{len(over)} of {len(rows)} frames reach "
             f"--fail-on {fail_on.value}: {named}{more}")
