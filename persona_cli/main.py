"""``persona-core``: the operator's command line (typer + rich).

Every command reads :class:`persona_core.settings.Settings` (``PERSONA_*``; ``--home``
overrides ``PERSONA_HOME``), prints a table or, with ``--json``, one JSON document on
stdout, and exits with a documented code (see ``persona-core --help``).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.engine import make_url

from persona_cli import aliases, api_keys, cache, drift, erasure, pack, qc, viewer, webhooks
from persona_cli.common import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonOpt,
    State,
    emit_json,
    err,
    fail,
    handle_errors,
    open_stores,
    out,
    set_state,
    settings,
    state,
    want_json,
)
from persona_cli.lineage import origin_of, origin_text
from persona_cli.models import (
    AllowNoncommercialOpt,
    DetectorModelOpt,
    ExpressionModelOpt,
    IdentityModelOpt,
    ModelDirOpt,
    StyleModelOpt,
    VoiceModelOpt,
    chosen_models,
)
from persona_cli.progress import steps
from persona_core.errors import InvalidInputError
from persona_core.logging import configure_logging
from persona_core.pack import check_persona_id
from persona_core.settings import LogSettings, Settings
from persona_core.store.base import BuildLease, MetadataStore, VersionRecord, VersionStatus
from persona_core.versions import LeaseKeeper, mark_dead_builds

if TYPE_CHECKING:
    from persona_pipeline.build import BuildResult
    from persona_pipeline.defs.resources import ModelsResource

app = typer.Typer(
    name="persona-core",
    help="Build, inspect, move and serve versioned PersonaPacks.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(pack.app, name="pack")
app.add_typer(api_keys.app, name="keys")
app.add_typer(cache.app, name="cache")
app.add_typer(aliases.app, name="alias")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(webhooks.events_app, name="events")
app.command(name="qc")(qc.qc)
app.command(name="drift")(drift.drift)
app.command(name="erase")(erasure.erase_command)
app.command(name="gc")(erasure.gc_command)
app.command(name="promote")(aliases.promote_command)
app.command(name="rollback")(aliases.rollback_command)
app.command(name="retract")(aliases.retract_command)
app.command(name="ui-link")(viewer.ui_link)


@app.callback()
def root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="State folder of the embedded default (overrides PERSONA_HOME)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output for every command.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-V", help="Show INFO logs.")] = False,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="Logs as JSON lines (same as PERSONA_LOG_JSON=1).")
    ] = False,
) -> None:
    set_state(State(home=home, json=json_out, verbose=verbose))
    # Logs go to stderr; a CLI shows warnings only unless asked (PERSONA_LOG_LEVEL also works).
    logs = LogSettings()
    level = "INFO" if verbose else (logs.log_level if "log_level" in logs.model_fields_set else "WARNING")
    configure_logging(level, json_output=True if log_json else None)


@app.command()
@handle_errors
def demo(json_out: JsonOpt = False) -> None:
    """Build a real persona from the bundled fixture photos and voices, then show its pack.

    Exits 5 when a quality gate blocks the pack, 1 when the build fails.
    """
    from persona_pipeline.demo import run_demo  # noqa: PLC0415 - pipeline stack (torch, models) on demand

    quiet = want_json(json_out)
    s = settings()
    # With --json the human summary goes to stderr so stdout holds only the JSON document; the
    # progress lines go to stderr either way.
    with steps():
        summary = run_demo(s.home, progress=False, console=err() if quiet else None)
    if quiet:
        emit_json(summary)
    _exit_for_status(summary, json_out)


@app.command()
@handle_errors
def build(  # noqa: PLR0917 - typer maps each parameter to an option
    path: Annotated[Path, typer.Argument(help="Folder of photos, clips and voice files (see below).")],
    persona: Annotated[str, typer.Option("--persona", "-p", help="Persona id; created if missing.")],
    detector_model: DetectorModelOpt = "",
    identity_model: IdentityModelOpt = "",
    style_model: StyleModelOpt = "",
    voice_model: VoiceModelOpt = "",
    expression_model: ExpressionModelOpt = "",
    model_dir: ModelDirOpt = None,
    allow_noncommercial: AllowNoncommercialOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Upload a folder as a new version and build its pack here (no Dagster daemon needed).

    Sub-folders named A_SELFIE, B_MIRROR or C_CUTAWAY tag their files with that camera mode;
    behavior.json / voice.json / refresh.json at the top level are the behaviour / voice config /
    drift lines. The models come from the options, else the PERSONA_* settings, else the
    offline defaults; the pack records them.
    Exits 5 when a quality gate blocks the pack, 1 when the build fails.
    """
    from persona_cli.inputs import folder_upload  # noqa: PLC0415 - image decoders only for this command
    from persona_core.uploads import submit_upload  # noqa: PLC0415

    quiet = want_json(json_out)
    s = settings()
    # The same gate as an HTTP or gRPC upload, and before anything (even the persona) is written.
    check_persona_id(persona)
    models = chosen_models(detector_model, identity_model, style_model, voice_model, expression_model,
                           model_dir, allow_noncommercial)
    inputs = folder_upload(path, s)
    meta, blobs = open_stores(s)
    meta.ensure_persona(persona, {})  # parallel first builds of a new persona all get it
    started = time.perf_counter()
    with steps() as say:
        say(f"uploading {len(inputs.upload.files)} files")
        # Born under this process's lease: killed anywhere from here on, `versions` fails it.
        record = submit_upload(meta, blobs, persona, inputs.upload, lease=BuildLease.here())
        result = _build_here(meta, s, persona, record.version, say, models=models)
    from persona_pipeline.demo import print_summary, summarize  # noqa: PLC0415 - pipeline stack on demand

    summary = summarize(result, round(time.perf_counter() - started, 2))
    summary["inputs"] = inputs.counts
    summary["skipped_files"] = [s.model_dump(mode="json") for s in inputs.skipped]
    summary["upload_notes"] = list(inputs.notes)
    summary["viewer_url"] = viewer.viewer_link(s, persona, record.version)
    if quiet:
        emit_json(summary)
    else:
        print_summary(summary, out())
        for skipped in inputs.skipped:
            out().print(f"skipped {skipped.origin or skipped.name}: {skipped.reason}", markup=False)
        for note in inputs.notes:
            out().print(f"note: {note}", markup=False)
        out().print(f"viewer (opens for {viewer.DEFAULT_TTL_S // 60} min): {summary['viewer_url']}",
                    markup=False, highlight=False)
    _exit_for_status(summary, json_out)


def _build_here(meta: MetadataStore, s: Settings, persona_id: str, version: int, say: Callable[[str], None],
                *, models: ModelsResource, config: dict[str, Any] | None = None) -> BuildResult:
    """Build in this process, recorded in the project's Dagster instance (`make dagster`), saying
    each step as it ends (``say``: a :func:`~persona_cli.progress.steps` line)."""
    say(f"building {persona_id} v{version}")
    # Claimed at once: the upload sensor leaves a version that is not pending alone, and a
    # killed CLI leaves a lease that `versions` and the stuck-builds sensor fail.
    lease = LeaseKeeper(meta, persona_id, version, heartbeat_s=s.lease_heartbeat_s)
    lease.start()
    try:
        from persona_pipeline.build import build_version  # noqa: PLC0415 - pipeline stack on demand
        from persona_pipeline.steps.config import PipelineConfig  # noqa: PLC0415
    finally:
        lease.stop()  # the run holds its own lease from its first step on
    # Dagster logs a blocked gate as an ERROR with a stack trace; the summary says it in
    # one line, so its run log shows only with --verbose.
    return build_version(persona_id, version, s, log_level="INFO" if state().verbose else "CRITICAL",
                         config=PipelineConfig.from_dict(config) if config else None, models=models)


def _exit_for_status(summary: dict[str, Any], json_out: bool) -> None:
    status = summary.get("status")
    if status == VersionStatus.PUBLISHED.value:
        return
    blocked = status == VersionStatus.BLOCKED.value
    code = ExitCode.BLOCKED if blocked else ExitCode.FAILURE
    if want_json(json_out):
        raise typer.Exit(int(code))  # the summary on stdout already says why; keep it one document
    reasons = "; ".join(summary.get("reasons") or []) or f"build ended {status}"
    fail(code, "build_blocked" if blocked else "build_failed", reasons)


@app.command()
@handle_errors
def versions(persona_id: str, json_out: JsonOpt = False) -> None:
    """List a persona's versions with their status, reasons, content hash and origin: an upload,
    a rebuild of vN with its thresholds (and "same content as vN" when its pack did not change),
    or an import (whose created and published times are the import's)."""
    s = settings()
    meta, _ = open_stores(s)
    # A build whose process or run is gone is failed here, the moment someone looks.
    mark_dead_builds(meta, persona_id, ttl_s=s.lease_ttl_s, pending_timeout_s=s.pending_timeout_s)
    records = meta.list_versions(persona_id)
    if not records:
        meta.get_persona(persona_id)  # raises when the persona itself is unknown
    by_number = {r.version: r for r in records}
    if want_json(json_out):
        emit_json([_version_doc(r) | {"origin": origin_of(r, by_number)} for r in records])
        return
    table = Table(title=f"{persona_id} versions")
    for col in ("version", "status", "created", "published", "content hash", "origin", "reasons"):
        table.add_column(col)
    for r in records:
        table.add_row(
            str(r.version),
            r.status.value,
            r.created_at.isoformat(timespec="seconds"),
            r.published_at.isoformat(timespec="seconds") if r.published_at else "",
            (r.content_hash or "")[:16],
            origin_text(origin_of(r, by_number)),
            "; ".join(r.reasons),
        )
    out().print(table)


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port.")] = 8000,
    grpc_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Also serve gRPC here (default PERSONA_GRPC_PORT; 0 = off)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="HTTP worker processes (default: one per core).")
    ] = None,
) -> None:
    """Run the registry (HTTP on uvicorn, optionally gRPC) over the configured stores."""
    from registry_api.config import ApiSettings  # noqa: PLC0415 - the api extra, only for this command
    from registry_api.server import serve as serve_registry  # noqa: PLC0415

    s = settings(ApiSettings)
    configure_logging(settings=s)
    serve_registry(s, host=host, port=port, grpc_port=grpc_port, workers=workers)  # type: ignore[arg-type]


@app.command()
@handle_errors
def migrate(json_out: JsonOpt = False) -> None:
    """Create or upgrade the metadata database schema (idempotent). Run it once per deploy,
    before the registry and Dagster start: they only check the schema, they never migrate it."""
    from persona_core.store.from_settings import migrate_metadata_store  # noqa: PLC0415

    before, after = migrate_metadata_store(settings())
    if want_json(json_out):
        emit_json({"ok": True, "from_revision": before, "revision": after})
    elif before == after:
        out().print(f"metadata schema is up to date ({after})")
    else:
        out().print(f"metadata schema migrated from {before or 'empty'} to {after}")


@app.command()
@handle_errors
def rebuild(  # noqa: PLR0917 - typer maps each parameter to an option
    persona_id: str,
    from_version: Annotated[
        int | None,
        # -v/--version name the version a command reads, as in pack and drift.
        typer.Option("--version", "--from-version", "-v", min=1,
                     help="Version whose inputs to reuse (default: newest)."),
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(help='PipelineConfig fields as JSON for this build, e.g. \'{"blur_min": 40}\'.'),
    ] = None,
    detector_model: DetectorModelOpt = "",
    identity_model: IdentityModelOpt = "",
    style_model: StyleModelOpt = "",
    voice_model: VoiceModelOpt = "",
    expression_model: ExpressionModelOpt = "",
    model_dir: ModelDirOpt = None,
    allow_noncommercial: AllowNoncommercialOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Build a NEW version from an existing version's inputs (threshold or model upgrades);
    the old version and its pack stay as they are. Exits 5 when blocked, 1 when it fails."""
    from persona_core.ingest import resubmit_version  # noqa: PLC0415
    from persona_pipeline.demo import print_summary, summarize  # noqa: PLC0415 - pipeline stack on demand

    quiet = want_json(json_out)
    s = settings()
    config = _thresholds(thresholds)
    models = chosen_models(detector_model, identity_model, style_model, voice_model, expression_model,
                           model_dir, allow_noncommercial)
    meta, blobs = open_stores(s)
    started = time.perf_counter()
    with steps() as say:
        record = resubmit_version(meta, blobs, persona_id, from_version, lease=BuildLease.here(),
                                  thresholds=config)
        result = _build_here(meta, s, persona_id, record.version, say, models=models, config=config)
    summary = summarize(result, round(time.perf_counter() - started, 2))
    origin = origin_of(result.record, {r.version: r for r in meta.list_versions(persona_id)})
    summary["origin"] = origin
    if origin.get("same_content_as") is not None:
        # Nothing the thresholds or models changed reached the pack: say so, or it looks like news.
        summary["notes"] = [f"same content as v{origin['same_content_as']}: this rebuild changed nothing"]
    if quiet:
        emit_json(summary)
    else:
        print_summary(summary, out())
    _exit_for_status(summary, json_out)


def _thresholds(raw: str | None) -> dict[str, Any] | None:
    """--thresholds, checked field by field before any version is written."""
    from persona_pipeline.steps.config import PipelineConfig  # noqa: PLC0415 - pipeline stack on demand

    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--thresholds is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError("--thresholds must be a JSON object of PipelineConfig fields")
    PipelineConfig.from_dict(doc)
    return doc


@app.command()
@handle_errors
def info(json_out: JsonOpt = False) -> None:
    """Where everything lives: home, database URL (password hidden), blob store, the Dagster
    instance folder (DAGSTER_HOME for `dagster` commands), the model folder and the models found
    with their sha256; and what the models run on: the onnxruntime build installed, the providers
    it reports and the ones a session really gets (CUDA only where a GPU answers), and torch's
    device."""
    from persona_core.vision import registry  # noqa: PLC0415 - model registry only for this command
    from persona_core.vision.errors import ModelChecksumError, ModelUnavailableError  # noqa: PLC0415
    from persona_core.vision.sessions import onnxruntime_report  # noqa: PLC0415
    from persona_pipeline.models import register_builder_models  # noqa: PLC0415

    register_builder_models()
    s = settings()
    model_dir = registry.model_dir_from_env()
    models = []
    for entry in registry.list_models():
        for wf in entry.files:
            doc: dict[str, Any] = {"name": entry.name, "task": entry.task, "file": wf.filename,
                                   "default": entry.default}
            try:
                path, digest = registry.resolve_file(wf, model_dir, weights_dir=entry.weights_dir)
                doc |= {"found": True, "path": str(path), "sha256": digest}
            except (ModelUnavailableError, ModelChecksumError) as exc:
                doc |= {"found": False, "path": None, "sha256": None, "problem": str(exc)}
            models.append(doc)
    doc = {
        "home": str(s.home.resolve()),
        "database_url": make_url(s.resolved_database_url).render_as_string(hide_password=True),
        "blob_url": s.resolved_blob_url,
        "dagster_home": str(s.resolved_dagster_home),
        "model_dir": str(model_dir) if model_dir else None,
        "models": models,
        "onnxruntime": onnxruntime_report(),
        "torch": _torch_report(),
    }
    if want_json(json_out):
        emit_json(doc)
        return
    for key in ("home", "database_url", "blob_url", "dagster_home", "model_dir"):
        value = doc[key] or "(none: vendored and installed weights)"
        out().print(f"{key}: {value}", markup=False, highlight=False)
    for line in _runs_on_lines(doc["onnxruntime"], doc["torch"]):
        out().print(line, markup=False, highlight=False)
    table = Table(title="models")
    for col in ("name", "task", "file", "found", "sha256"):
        table.add_column(col)
    for m in models:
        table.add_row(m["name"], m["task"], m["file"], "yes" if m["found"] else "no", m["sha256"] or "")
    out().print(table)


def _torch_report() -> dict[str, Any] | None:
    """torch's version and whether it sees a GPU (the voice model runs there then); None when
    torch is not installed (no pipeline extra)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch  # noqa: PLC0415 - seconds to import; only for this command

    return {"version": torch.__version__, "cuda": bool(torch.cuda.is_available())}


def _runs_on_lines(ort: dict[str, Any], torch: dict[str, Any] | None) -> list[str]:
    dists = ", ".join(f"{name} {version}" for name, version in ort["distributions"].items())
    lines = [
        f"onnxruntime: {dists or 'not installed'}",
        f"onnxruntime providers reported: {', '.join(ort['available']) or '-'}",
        f"onnxruntime session providers: {', '.join(ort['session']) or '-'}"
        f" ({'GPU' if ort['gpu'] else 'CPU only'})",
        "torch: "
        + (f"{torch['version']} ({'GPU' if torch['cuda'] else 'CPU only'})" if torch else "not installed"),
    ]
    return lines + [f"problem: {p}" for p in ort["problems"]]


def _version_doc(r: VersionRecord) -> dict[str, Any]:
    return {
        "persona_id": r.persona_id,
        "version": r.version,
        "status": r.status.value,
        "reasons": list(r.reasons),
        "created_at": r.created_at.isoformat(),
        "published_at": r.published_at.isoformat() if r.published_at else None,
        "content_hash": r.content_hash,
        "pack_ref": r.pack_ref,
        "build": {"host": r.lease.host, "pid": r.lease.pid, "run_id": r.lease.run_id or None,
                  "heartbeat_at": r.heartbeat_at.isoformat() if r.heartbeat_at else None}
        if r.lease else None,
    }


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
