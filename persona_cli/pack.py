"""``persona-core pack show|verify|export|import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, open_stores, out, settings, want_json
from persona_cli.progress import spinner
from persona_core.archive import export_pack, import_pack, verify_archive
from persona_core.errors import IntegrityError
from persona_core.pack import PersonaPack
from persona_core.publish import verify_pack_blobs
from persona_core.schema import validate_pack_document

app = typer.Typer(help="Inspect, verify and move published PersonaPacks.", no_args_is_help=True)

VersionOpt = Annotated[
    int | None, typer.Option("--version", "-v", min=1, help="Version number (default: newest published).")
]


def load_pack(meta: Any, blobs: Any, persona_id: str, version: int | None) -> tuple[Any, PersonaPack]:
    """The published record and its pack (the blob store re-hashes the pack bytes)."""
    record = meta.get_published(persona_id, version)
    return record, PersonaPack.model_validate_json(blobs.get(record.pack_ref))


@app.command("show")
@handle_errors
def show(persona_id: str, version: VersionOpt = None, json_out: JsonOpt = False) -> None:
    """Show a published pack: anchors per camera mode, scores, checks, rejected inputs."""
    meta, blobs = open_stores(settings())
    record, pack = load_pack(meta, blobs, persona_id, version)
    if want_json(json_out):
        emit_json(pack.to_json_dict())
        return
    console = out()
    console.print(
        f"[bold]{pack.persona_id} v{pack.version}[/bold]  content hash {pack.content_hash}\n"
        f"created {pack.created_at}  pipeline {pack.provenance.pipeline_version}  "
        f"run {pack.provenance.run_id}  pack {record.pack_ref}"
    )
    anchors = Table(title="Anchors", show_lines=False)
    columns = ("mode", "anchor", "expression", "lighting", "yaw/pitch/roll", "quality", "identity", "use")
    for col in columns:
        anchors.add_column(col)
    for mode, items in pack.anchor_sets.items():
        for a in items:
            pose = a.metadata.head_pose
            anchors.add_row(
                mode.value,
                a.anchor_id + (" *" if a.canonical else ""),
                a.metadata.expression_tag.value,
                a.metadata.lighting_tag.value,
                f"{pose.yaw:.0f}/{pose.pitch:.0f}/{pose.roll:.0f}",
                f"{a.quality.overall:.2f}",
                f"{a.quality.identity_consistency:.2f}",
                ", ".join(a.metadata.best_for),
            )
    console.print(anchors)
    console.print("* canonical anchor of its mode")
    if pack.checks:
        checks = Table(title="Checks")
        for col in ("check", "severity", "result", "details"):
            checks.add_column(col)
        for c in pack.checks:
            details = ", ".join(f"{k}={v}" for k, v in sorted(c.metadata.items()))
            checks.add_row(c.name, c.severity, "pass" if c.passed else "FAIL", details)
        console.print(checks)
    rejected = [i for i in pack.provenance.inputs if not i.accepted]
    console.print(f"inputs: {len(pack.provenance.inputs)} ({len(rejected)} rejected)")
    for i in rejected:
        console.print(f"  rejected {i.name}: {i.reason}", markup=False)
    voice = pack.voice_profile
    console.print(
        "voice: "
        + ("none" if voice is None else f"{voice.embedding_model or '-'} (defaults {voice.defaults_applied})")
        + f"  behaviour defaults: {pack.behavior_policy.defaults_applied}"
    )


@app.command("verify")
@handle_errors
def verify(
    target: Annotated[str, typer.Argument(help="A persona id (stored pack) or a .personapack file.")],
    version: VersionOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-check a stored pack (schema, content hash, every blob's hash, embedding rows) or an archive."""
    path = Path(target)
    if path.is_file():
        with spinner(f"verifying {path.name}", enabled=not want_json(json_out)):
            verified = verify_archive(path)
        result = {
            "ok": True,
            "archive": str(path),
            "persona_id": verified.pack.persona_id,
            "version": verified.pack.version,
            "content_hash": verified.pack.content_hash,
            "blobs_verified": len(verified.blobs),
        }
    else:
        meta, blobs = open_stores(settings())
        with spinner(f"verifying {target}", enabled=not want_json(json_out)):
            record, pack = load_pack(meta, blobs, target, version)
            validate_pack_document(pack.to_json_dict())
            recomputed = pack.compute_content_hash()
            if recomputed != pack.content_hash or recomputed != record.content_hash:
                raise IntegrityError(
                    f"{target} v{record.version}: content hashes to {recomputed}, the pack says "
                    f"{pack.content_hash}, the registry {record.content_hash}"
                )
            verify_pack_blobs(blobs, pack)
        result = {
            "ok": True,
            "persona_id": pack.persona_id,
            "version": record.version,
            "content_hash": recomputed,
            "blobs_verified": len(pack.all_blob_refs()),
        }
    if want_json(json_out):
        emit_json(result)
    else:
        out().print(
            f"ok: {result['persona_id']} v{result['version']} content hash {result['content_hash']}, "
            f"{result['blobs_verified']} blobs verified"
        )


@app.command("export")
@handle_errors
def export(
    persona_id: str,
    version: VersionOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Archive path (default: <id>-v<N>.personapack).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a published pack and every blob it references to a portable .personapack file."""
    meta, blobs = open_stores(settings())
    if output is None:
        number = meta.get_published(persona_id, version).version
        output = Path(f"{persona_id}-v{number}.personapack")
    with spinner(f"exporting {persona_id}", enabled=not want_json(json_out)):
        result = export_pack(meta, blobs, persona_id, version, output)
    doc = {
        "path": str(result.path),
        "persona_id": result.persona_id,
        "version": result.version,
        "content_hash": result.content_hash,
        "blob_count": result.blob_count,
        "size_bytes": result.size_bytes,
    }
    if want_json(json_out):
        emit_json(doc)
    else:
        out().print(
            f"exported {result.persona_id} v{result.version} ({result.blob_count} blobs, "
            f"{result.size_bytes} bytes) to {result.path}"
        )


@app.command("import")
@handle_errors
def import_(
    path: Annotated[Path, typer.Argument(help="A .personapack file.")],
    renumber: Annotated[
        bool, typer.Option("--renumber", help="Publish as the persona's next version if the number is taken.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Verify an archive completely, then publish its pack here (creating the persona if missing)."""
    meta, blobs = open_stores(settings())
    with spinner(f"importing {path.name}", enabled=not want_json(json_out)):
        result = import_pack(meta, blobs, path, renumber=renumber)
    doc = {
        "persona_id": result.persona_id,
        "version": result.version,
        "content_hash": result.content_hash,
        "pack_ref": result.pack_ref,
        "blob_count": result.blob_count,
        "created_persona": result.created_persona,
        "already_present": result.already_present,
    }
    if want_json(json_out):
        emit_json(doc)
    elif result.already_present:
        out().print(f"already present: {result.persona_id} v{result.version} ({result.content_hash})")
    else:
        out().print(
            f"imported {result.persona_id} v{result.version} ({result.blob_count} blobs), "
            f"content hash {result.content_hash}"
        )
