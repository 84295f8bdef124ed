"""``persona-core erase`` and ``persona-core gc``: remove a person, and keep nothing longer than
needed, on the configured stores (the same ones the registry and Dagster use)."""

from __future__ import annotations

import getpass
import logging
from typing import Annotated

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, open_stores, out, settings, want_json
from persona_core.erasure import ARCHIVES_NOTE, ErasureReport, Purger, erase, readers_forget
from persona_core.retention import GcReport, collect_garbage
from persona_core.settings import Settings

log = logging.getLogger("persona_cli.erasure")


@handle_errors
def erase_command(
    persona_id: Annotated[str, typer.Argument(help="The persona to erase.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept in the erasure record and the audit log).")
    ],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Erase only this version (default: the whole persona)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase a persona (or one version) and everything stored about it: its uploads, crops,
    embeddings, packs and manifests, in the blob store and the database, and its runs in the
    Dagster instance. Blobs another persona also holds stay. A tombstone and an audit line (no
    biometric content) remain, and the id is never handed out again. Run it again to resume an
    interrupted erasure; an erased subject is reported, not erased twice. Exported .personapack
    archives are outside its reach."""
    s = settings()
    meta, blobs = open_stores(s)
    purgers = [readers_forget(s.erasure_poll_s), *_dagster_purgers(s)]
    report = erase(meta, blobs, persona_id, version, actor=_actor(), reason=reason, purgers=purgers)
    if want_json(json_out):
        emit_json(report.as_dict())
        return
    _print_erasure(report)


@handle_errors
def gc_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Garbage-collect: finish interrupted erasures, erase versions that never published and are
    older than PERSONA_RETENTION_DAYS (30), and delete every blob and object no version holds
    that is older than PERSONA_GC_GRACE_S (1 day, so an upload reusing a blob keeps it)."""
    s = settings()
    meta, blobs = open_stores(s)
    report = collect_garbage(meta, blobs, retention_days=s.retention_days, grace_s=s.gc_grace_s,
                             dry_run=dry_run, actor=_actor(), purgers=_dagster_purgers(s))
    if want_json(json_out):
        emit_json(report.as_dict())
        return
    _print_gc(report)


def _dagster_purgers(s: Settings) -> list[Purger]:
    """The Dagster instance's purger when the pipeline is installed here."""
    try:
        from persona_pipeline.erasure import purger_for  # noqa: PLC0415 - the pipeline extra, on demand
    except ImportError as exc:
        log.warning("the Dagster instance is not purged by this command (%s); the pipeline's erasure "
                    "sensor purges it", exc)
        return []
    return [purger_for(s)]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _print_erasure(report: ErasureReport) -> None:
    console = out()
    subject = report.persona_id if report.version is None else f"{report.persona_id} v{report.version}"
    versions = ", ".join(str(v) for v in report.versions) or "none"
    if report.already_erased:
        when = report.finished_at.isoformat(timespec="seconds") if report.finished_at else "?"
        console.print(f"{subject} was already erased (versions {versions}; finished {when})", markup=False)
    else:
        console.print(
            f"erased {subject} (versions {versions}): {report.blobs_deleted} blobs and "
            f"{report.objects_deleted} objects deleted, {report.kept_shared} kept because another "
            f"persona or version holds them",
            markup=False,
        )
    console.print(f"note: {ARCHIVES_NOTE}", markup=False)


def _print_gc(report: GcReport) -> None:
    table = Table(title="gc (dry run: nothing deleted)" if report.dry_run else "gc")
    table.add_column("what")
    table.add_column("count", justify="right")
    done = "to delete" if report.dry_run else "deleted"
    rows = [
        ("erasures resumed", report.resumed_erasures),
        ("never-published versions past retention", len(report.expired_versions)),
        (f"blobs {done}", report.blobs_deleted),
        (f"objects {done}", report.objects_deleted),
        ("bytes " + ("to reclaim" if report.dry_run else "reclaimed"), report.bytes_reclaimed),
        ("unheld but inside the grace period (kept)", report.kept_young),
    ]
    for what, count in rows:
        table.add_row(what, f"{count:,}")
    console = out()
    console.print(table)
    for subject in report.expired_versions:
        console.print(f"expired: {subject}", markup=False)
    console.print(f"took {report.seconds:.2f} s", markup=False)
