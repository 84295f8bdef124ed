"""``persona-core erase`` and ``persona-core gc``: remove a person, and keep nothing longer than
needed, on the configured stores (the same ones the registry and Dagster use)."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import (
    ExitCode,
    JsonOpt,
    emit_json,
    err,
    handle_errors,
    open_stores,
    out,
    settings,
    want_json,
)
from persona_core.erasure import ARCHIVES_NOTE, ErasureReport, Purger, erase, readers_forget
from persona_core.erasure_verify import Places, SubjectFingerprint, Survivor, fingerprint, verify_erased
from persona_core.errors import ErasedError
from persona_core.retention import GcReport, collect_garbage
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore

log = logging.getLogger("persona_cli.erasure")


@handle_errors
def erase_command(  # noqa: PLR0917 - typer maps each parameter to an option
    persona_id: Annotated[str, typer.Argument(help="The persona to erase.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept in the erasure record and the audit log).")
    ],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Erase only this version (default: the whole persona)."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Prove it: note what identifies the subject first (input "
                     "sha256s, embedding rows, contact sheets), search every store for it after; exit 4 "
                     "if anything survived."),
    ] = False,
    verify_cache_dir: Annotated[
        list[Path] | None,
        typer.Option("--verify-cache-dir", help="With --verify: a renderer's pack cache folder to search."),
    ] = None,
    verify_log: Annotated[
        list[Path] | None,
        typer.Option("--verify-log", help="With --verify: a log file (or folder of them) to search too."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase a persona (or one version) and everything stored about it: its uploads, crops,
    embeddings, packs and manifests, in the blob store and the database, and its runs in the
    Dagster instance. Blobs another persona also holds stay. A tombstone and an audit line (no
    biometric content) remain, and the id is never handed out again. Run it again to resume an
    interrupted erasure; an erased subject is reported, not erased twice. Exported .personapack
    archives are outside its reach. With --verify it then searches the blob store, the database,
    the Dagster instance, the CLI's pack cache and the folders and logs named for anything of the
    subject, and lists each survivor (exit 4)."""
    s = settings()
    meta, blobs = open_stores(s)
    subject = _fingerprint(s, meta, blobs, persona_id, version) if verify else None
    purgers = [readers_forget(s.erasure_wait_s), *_dagster_purgers(s)]
    report = erase(meta, blobs, persona_id, version, actor=_actor(), reason=reason, purgers=purgers)
    survivors: list[Survivor] | None = None
    if subject is not None:
        places = Places.from_settings(s, blobs, cache_dirs=verify_cache_dir or [], log_files=verify_log or [])
        survivors = verify_erased(subject, places)
    if want_json(json_out):
        doc = report.as_dict()
        if verify:
            doc["verify"] = _verify_doc(subject, survivors)
        emit_json(doc)
    else:
        _print_erasure(report)
        if verify:
            _print_verify(subject, survivors)
    if survivors:
        raise typer.Exit(int(ExitCode.INTEGRITY))


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


def _fingerprint(
    s: Settings, meta: MetadataStore, blobs: BlobStore, persona_id: str, version: int | None
) -> SubjectFingerprint | None:
    """What identifies the subject, before it is erased; None when its erasure already began."""
    try:
        versions = [r.version for r in meta.list_versions(persona_id) if version in (None, r.version)]
        sheets = _contact_sheets(s, persona_id, versions)
        return fingerprint(meta, blobs, persona_id, versions, contact_sheets=sheets)
    except ErasedError:
        return None


def _contact_sheets(s: Settings, persona_id: str, versions: list[int]) -> list[bytes]:
    try:
        from persona_pipeline.contact_sheets import contact_sheets_for  # noqa: PLC0415 - the pipeline extra
    except ImportError:
        return []
    return contact_sheets_for(s, persona_id, versions)


def _verify_doc(subject: SubjectFingerprint | None, survivors: list[Survivor] | None) -> dict[str, Any]:
    if subject is None or survivors is None:
        return {"verified": False, "why": _UNVERIFIABLE}
    return {
        "verified": not survivors,
        "fingerprint": subject.summary(),
        "survivors": [{"store": x.store, "location": x.location, "matched": x.matched} for x in survivors],
    }


def _print_verify(subject: SubjectFingerprint | None, survivors: list[Survivor] | None) -> None:
    if subject is None or survivors is None:
        err().print(f"not verified: {_UNVERIFIABLE}", markup=False)
        return
    counts = subject.summary()
    if not survivors:
        out().print(f"verified: none of {counts['inputs']} inputs, {counts['refs']} stored items and "
                    f"{counts['probes']} byte probes found in any store", markup=False)
        return
    for survivor in survivors:
        out().print(f"survivor: {survivor}", markup=False)
    err().print(f"not erased everywhere: {len(survivors)} survivor(s)", markup=False)


_UNVERIFIABLE = ("its erasure had already begun, so what identified it could not be noted first; "
                 "--verify proves the erasure it starts")


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
