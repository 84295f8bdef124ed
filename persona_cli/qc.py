"""``persona-core qc PHOTO...``: judge photos as the builder would, without building anything.

Per photo: the QC verdict and its reason, and each tag with its confidence (expression, eyes
open, mouth closed, head pose, lighting, camera mode with its evidence), so an uploader can
check photos before uploading them. A file that cannot be read gets an entry with its reason,
and the command then exits 2 once every photo has its entry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import ExitCode, JsonOpt, emit_json, fail, handle_errors, out, want_json
from persona_cli.models import (
    AllowNoncommercialOpt,
    DetectorModelOpt,
    ExpressionModelOpt,
    ModelDirOpt,
    chosen_models,
)
from persona_core.errors import InvalidInputError
from persona_core.pack import CameraMode

if TYPE_CHECKING:
    from persona_pipeline.defs.resources import ModelsResource


def judge_photos(paths: list[Path], models: ModelsResource, *, camera_mode: str = "") -> list[dict[str, Any]]:
    """One report per path (``persona_pipeline.steps.qc.tag_report`` plus ``file``), in order,
    with the builder's detector and tag models as ``models`` chooses them."""
    # The pipeline's models and steps load OpenCV and onnxruntime: only when the command runs.
    from persona_pipeline.steps.config import PipelineConfig  # noqa: PLC0415
    from persona_pipeline.steps.inputs import ImageInput  # noqa: PLC0415
    from persona_pipeline.steps.qc import measure, tag_report, verdict  # noqa: PLC0415

    config = PipelineConfig()
    detector = models.detector_model()
    taggers = models.taggers()
    reports = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            reports.append({"file": str(path), "passed": False, "readable": False,
                            "reason": f"cannot read file: {exc.strerror or exc}",
                            **dict.fromkeys(("expression", "eyes_open", "mouth_closed", "head_pose",
                                             "lighting", "camera_mode"))})
            continue
        sha = hashlib.sha256(data).hexdigest()
        item = ImageInput(path.name, sha, f"sha256:{sha}", camera_mode=camera_mode or None)
        row = verdict(item, measure(data, detector, config, taggers), config)
        reports.append({"file": str(path), "readable": True, **tag_report(row, config)})
    return reports


def _cell(tag: dict[str, Any] | None) -> str:
    if tag is None:
        return "-"
    value = tag["value"]
    if isinstance(value, dict):
        value = "/".join(f"{v:.0f}" for v in value.values())
    return f"{value} ({tag['confidence']:.2f})"


@handle_errors
def qc(  # noqa: PLR0917 - typer maps each parameter to an option
    photos: Annotated[list[Path], typer.Argument(help="Photos to judge.")],
    camera_mode: Annotated[
        str, typer.Option("--camera-mode", help="Judge as if the uploader tagged them with this mode.")
    ] = "",
    detector_model: DetectorModelOpt = "",
    expression_model: ExpressionModelOpt = "",
    model_dir: ModelDirOpt = None,
    allow_noncommercial: AllowNoncommercialOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Judge photos without building: QC verdict and reason, tags with confidences, camera mode
    with its evidence. A photo that fails QC (a corrupt one included) is a verdict, exit 0; a
    file that cannot be read (missing, a folder, no permission) is reported too, then exits 2."""
    if camera_mode and camera_mode not in {m.value for m in CameraMode}:
        raise InvalidInputError(f"unknown camera mode {camera_mode!r}; expected one of "
                                f"{[m.value for m in CameraMode]}")
    models = chosen_models(detector=detector_model, expression=expression_model, model_dir=model_dir,
                           allow_noncommercial=allow_noncommercial)
    reports = judge_photos(list(photos), models, camera_mode=camera_mode)
    unreadable = [r["file"] for r in reports if not r["readable"]]
    if want_json(json_out):
        emit_json(reports)
        if unreadable:
            raise typer.Exit(int(ExitCode.USAGE))  # the document names them; keep it one
    else:
        table = Table("file", "passed", "camera mode", "expression", "eyes open", "mouth closed",
                      "yaw/pitch/roll", "reason", title="photo QC")
        for r in reports:
            table.add_row(r["file"], "yes" if r["passed"] else "no", _cell(r["camera_mode"]),
                          _cell(r["expression"]), _cell(r["eyes_open"]), _cell(r["mouth_closed"]),
                          _cell(r["head_pose"]), r["reason"])
        out().print(table)
    if unreadable:
        fail(ExitCode.USAGE, "unreadable_file", f"cannot read {len(unreadable)} of {len(reports)} "
             f"file(s): {', '.join(unreadable)}")
