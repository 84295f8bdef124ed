"""``persona-core``: the operator's command line (typer + rich).

Every command reads :class:`persona_core.settings.Settings` (``PERSONA_*``; ``--home``
overrides ``PERSONA_HOME``), prints a table or, with ``--json``, one JSON document on
stdout, and exits with a documented code (see ``persona-core --help``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli import keys, pack
from persona_cli.common import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonOpt,
    State,
    emit_json,
    fail,
    handle_errors,
    open_stores,
    out,
    set_state,
    settings,
    want_json,
)
from persona_cli.inputs import collect_inputs
from persona_cli.progress import spinner
from persona_core.errors import PersonaNotFoundError
from persona_core.ingest import submit_version
from persona_core.logging import configure_logging
from persona_core.store.base import VersionRecord, VersionStatus

app = typer.Typer(
    name="persona-core",
    help="Build, inspect, move and serve versioned PersonaPacks.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(pack.app, name="pack")
app.add_typer(keys.app, name="keys")


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
    set_state(State(home=home, json=json_out))
    # Logs go to stderr; a CLI shows warnings only unless asked (PERSONA_LOG_LEVEL also works).
    level = "INFO" if verbose else os.environ.get("PERSONA_LOG_LEVEL", "WARNING")
    configure_logging(level, json_output=True if log_json else None)


@app.command()
@handle_errors
def demo(json_out: JsonOpt = False) -> None:
    """Build a real persona from the bundled fixture photos and voices, then show its pack."""
    from persona_pipeline.demo import run_demo  # noqa: PLC0415 - pipeline stack (torch, models) on demand

    s = settings()
    result = run_demo(s.home, progress=not want_json(json_out))
    if want_json(json_out):
        emit_json(_plain(result))
    elif result is not None:
        out().print(result if isinstance(result, str) else _plain(result))


@app.command()
@handle_errors
def build(
    path: Annotated[Path, typer.Argument(help="Folder of photos, clips and voice files (see below).")],
    persona: Annotated[str, typer.Option("--persona", "-p", help="Persona id; created if missing.")],
    json_out: JsonOpt = False,
) -> None:
    """Upload a folder as a new version and build its pack here (no Dagster daemon needed).

    Sub-folders named A_SELFIE, B_MIRROR or C_CUTAWAY tag their files with that camera mode;
    behavior.json / voice.json at the top level are the behaviour / voice config.
    Exits 5 when a quality gate blocks the pack, 1 when the build fails.
    """
    s = settings()
    meta, blobs = open_stores(s)
    inputs = collect_inputs(path)
    quiet = want_json(json_out)
    try:
        meta.get_persona(persona)
    except PersonaNotFoundError:
        meta.create_persona(persona, {})
    with spinner(f"uploading {len(inputs.files)} files", enabled=not quiet):
        record = submit_version(
            meta,
            blobs,
            persona,
            inputs.files,
            behavior=inputs.behavior,
            voice=inputs.voice,
            camera_modes=inputs.camera_modes or None,
        )
    from persona_pipeline.build import build_version  # noqa: PLC0415 - pipeline stack on demand

    with spinner(f"building {persona} v{record.version}", enabled=not quiet):
        build_version(persona, record.version, s)
    final = meta.get_version(persona, record.version)
    summary = _version_doc(final)
    summary["inputs"] = inputs.counts
    summary["skipped_files"] = inputs.skipped
    if final.status == VersionStatus.PUBLISHED:
        _, built = pack.load_pack(meta, blobs, persona, final.version)
        summary["anchors"] = {m.value: len(a) for m, a in built.anchor_sets.items()}
        summary["rejected_inputs"] = [
            {"name": i.name, "reason": i.reason} for i in built.provenance.inputs if not i.accepted
        ]
    if quiet:
        emit_json(summary)
    else:
        console = out()
        console.print(f"{persona} v{final.version}: {final.status.value}")
        for key in ("content_hash", "anchors", "rejected_inputs", "reasons", "skipped_files"):
            if summary.get(key):
                console.print(f"  {key}: {summary[key]}", markup=False)
    if final.status == VersionStatus.BLOCKED:
        fail(ExitCode.BLOCKED, "build_blocked", "; ".join(final.reasons) or "blocked by a check", json_out)
    if final.status != VersionStatus.PUBLISHED:
        fail(ExitCode.FAILURE, "build_failed", "; ".join(final.reasons) or final.status.value, json_out)


@app.command()
@handle_errors
def versions(persona_id: str, json_out: JsonOpt = False) -> None:
    """List a persona's versions with their status, reasons and content hash."""
    meta, _ = open_stores(settings())
    records = meta.list_versions(persona_id)
    if not records:
        meta.get_persona(persona_id)  # raises when the persona itself is unknown
    if want_json(json_out):
        emit_json([_version_doc(r) for r in records])
        return
    table = Table(title=f"{persona_id} versions")
    for col in ("version", "status", "created", "published", "content hash", "reasons"):
        table.add_column(col)
    for r in records:
        table.add_row(
            str(r.version),
            r.status.value,
            r.created_at.isoformat(timespec="seconds"),
            r.published_at.isoformat(timespec="seconds") if r.published_at else "",
            (r.content_hash or "")[:16],
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
) -> None:
    """Run the registry (HTTP on uvicorn, optionally gRPC) over the configured stores."""
    from registry_api.config import ApiSettings  # noqa: PLC0415 - the api extra, only for this command
    from registry_api.server import serve as serve_registry  # noqa: PLC0415

    s = settings(ApiSettings)
    configure_logging(settings=s)
    serve_registry(s, host=host, port=port, grpc_port=grpc_port)  # type: ignore[arg-type]


@app.command()
@handle_errors
def migrate(json_out: JsonOpt = False) -> None:
    """Create or upgrade the metadata database schema (idempotent)."""
    s = settings()
    open_stores(s)  # opening the metadata store applies every pending migration
    if want_json(json_out):
        emit_json({"ok": True})
    else:
        out().print("metadata schema is up to date")


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
    }


def _plain(value: Any) -> Any:
    # Demo results may be dataclasses or pydantic models; print them as plain data.
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
