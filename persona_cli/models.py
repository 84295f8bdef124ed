"""The model options `build`, `rebuild` and `qc` share: each names a registry model for one task
and defaults to its ``PERSONA_*`` setting (then the task's offline default), as the Dagster
``models`` resource does for sensor-launched runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from persona_pipeline.defs.resources import ModelsResource


def _named(flag: str, task: str, setting: str, default: str) -> typer.models.OptionInfo:
    return typer.Option(
        flag, help=f"{task} model from the registry (default: {setting}, else {default}).", show_default=False
    )


DetectorModelOpt = Annotated[
    str, _named("--detector-model", "Face detector", "PERSONA_DETECTOR_MODEL", "yunet-2023mar-int8")
]
IdentityModelOpt = Annotated[
    str, _named("--identity-model", "Identity", "PERSONA_IDENTITY_MODEL", "sface-2021dec-int8")
]
StyleModelOpt = Annotated[str, _named("--style-model", "Style", "PERSONA_STYLE_MODEL", "efficientnet-lite0")]
VoiceModelOpt = Annotated[str, _named("--voice-model", "Voice", "PERSONA_VOICE_MODEL", "resemblyzer")]
ExpressionModelOpt = Annotated[
    str,
    _named(
        "--expression-model", "Expression classifier", "PERSONA_EXPRESSION_MODEL", "the face mesh geometry"
    ),
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        help="Folder searched first for weight files (default: PERSONA_MODEL_DIR).",
        show_default=False,
    ),
]
AllowNoncommercialOpt = Annotated[
    bool,
    typer.Option(
        "--allow-noncommercial",
        "--opt-in-noncommercial",
        help="Allow a model whose licence forbids commercial use (InsightFace packs, FER-2013); "
        "the pack records it (default: PERSONA_ALLOW_NONCOMMERCIAL).",
    ),
]


def chosen_models(  # noqa: PLR0917 - one parameter per command-line option
    detector: str = "",
    identity: str = "",
    style: str = "",
    voice: str = "",
    expression: str = "",
    model_dir: Path | None = None,
    allow_noncommercial: bool = False,
) -> ModelsResource:
    """The builder's models for this command: the options given, the settings for the rest.

    Raises the typed error of a bad choice (``unknown_model``, ``model_task_mismatch``,
    ``model_noncommercial``) before anything is written; loads no weights."""
    from persona_pipeline.defs.resources import ModelsResource  # noqa: PLC0415 - pipeline stack on demand

    models = ModelsResource(
        detector=detector,
        identity=identity,
        style=style,
        voice=voice,
        expression=expression,
        model_dir=str(model_dir) if model_dir else None,
        opt_in_noncommercial=allow_noncommercial,
    )
    models.check_choice()
    return models
