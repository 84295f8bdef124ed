"""``persona-core pack show|verify|diff|export|import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, open_stores, out, settings, want_json
from persona_cli.progress import spinner
from persona_core.archive import export_pack, import_pack, verify_archive
from persona_core.errors import IntegrityError, PackNotPublishedError, VersionNotFoundError
from persona_core.pack import PersonaPack
from persona_core.pack_diff import PackDiff, centroid_cosine, diff_packs
from persona_core.publish import verify_pack_blobs
from persona_core.schema import validate_pack_document
from persona_core.store.base import BlobStore, MetadataStore

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


SpecArg = Annotated[str, typer.Argument(help="A version number, 'latest' or an alias.")]


@app.command("diff")
@handle_errors
def diff(persona_id: str, from_version: SpecArg, to_version: SpecArg, json_out: JsonOpt = False) -> None:
    """What changed between two published versions: anchors per camera mode (by image), the
    identity centroids' cosine, drift lines, models, behaviour, voice, thresholds, inputs, checks."""
    meta, blobs = open_stores(settings())
    a, b = (published_pack(meta, blobs, persona_id, spec) for spec in (from_version, to_version))
    result = diff_packs(a, b, centroid_cosine=centroid_cosine(blobs, a, b))
    if want_json(json_out):
        emit_json(result.model_dump(mode="json"))
    else:
        print_diff(result)


def published_pack(meta: MetadataStore, blobs: BlobStore, persona_id: str, spec: str) -> PersonaPack:
    """The published pack a version spec names (a number, ``latest`` or an alias)."""
    if spec == "latest":
        number = None
    elif spec.isascii() and spec.isdigit():
        number = int(spec)
    else:
        number = meta.aliases.get(persona_id, spec).version
    try:
        return load_pack(meta, blobs, persona_id, number)[1]
    except VersionNotFoundError:
        if number is None:
            raise PackNotPublishedError(f"{persona_id} has no published version yet") from None
        status = meta.get_version(persona_id, number).status  # raises if there is no such version
        raise PackNotPublishedError(
            f"{persona_id} v{number} is {status.value}; its pack exists once it is published"
        ) from None


def print_diff(d: PackDiff) -> None:
    console = out()
    same = "same content" if d.same_content else "content differs"
    cosine = "n/a" if d.centroid_cosine is None else f"{d.centroid_cosine:.4f}"
    console.print(f"[bold]{d.persona_id} v{d.from_version} -> v{d.to_version}[/bold]  {same}  "
                  f"identity centroid cosine {cosine}")
    anchors = Table(title="Anchors (matched by image)")
    for col in ("mode", "change", "anchor", "image", "details"):
        anchors.add_column(col)
    for mode in d.anchors:
        for a in mode.added:
            anchors.add_row(mode.camera_mode, "+ added", a.anchor_id + (" *" if a.canonical else ""),
                            a.image_ref[7:19], "")
        for a in mode.removed:
            anchors.add_row(mode.camera_mode, "- removed", a.anchor_id + (" *" if a.canonical else ""),
                            a.image_ref[7:19], "")
        for k in mode.kept:
            details = "; ".join(f"{c.path}: {c.before} -> {c.after}" for c in k.changes)
            anchors.add_row(mode.camera_mode, "~ changed" if k.changes else "  kept", k.to_anchor_id,
                            k.image_ref[7:19], details)
    console.print(anchors)
    changes = _other_changes(d)
    if changes.row_count:
        console.print(changes)
    else:
        console.print("no other changes")


def _other_changes(d: PackDiff) -> Table:
    changes = Table(title="Other changes")
    for col in ("area", "field", "from", "to"):
        changes.add_column(col)
    for area, items in (("identity", d.identity), ("drift lines", d.refresh_policy), ("models", d.models),
                        ("behaviour", d.behavior), ("voice", d.voice), ("thresholds", d.thresholds)):
        for c in items:
            changes.add_row(area, c.path, _short(c.before), _short(c.after))
    for i in d.inputs_added:
        changes.add_row("inputs", f"+ {i.name}", "", i.sha256[:12])
    for i in d.inputs_removed:
        changes.add_row("inputs", f"- {i.name}", i.sha256[:12], "")
    for check in d.checks:
        if check.changed:
            changes.add_row("checks", f"{check.name} ({check.severity})", _verdict(check.from_passed),
                            _verdict(check.to_passed))
    return changes


def _verdict(passed: bool | None) -> str:
    return "-" if passed is None else "pass" if passed else "FAIL"


def _short(value: object, limit: int = 60) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
