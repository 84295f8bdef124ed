"""``persona-core alias set|get|list|delete|history``, ``promote``, ``rollback`` and ``retract``:
the registry's operations for data ops, on the configured stores (the same ones the registry
reads). Every move is a compare-and-set on where the alias pointed when this command read it,
recorded with ``cli:<user>`` and the reason."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, metadata_store, out, settings, want_json
from persona_core.errors import AliasNotFoundError, InvalidInputError, VersionNotFoundError
from persona_core.store.aliases import UNSET, Alias, AliasMove
from persona_core.store.base import MetadataStore, VersionRecord

app = typer.Typer(help="Named pointers to published versions (live, staging) that renderers pin.",
                  no_args_is_help=True)

Persona = Annotated[str, typer.Argument(help="The persona.")]
Name = Annotated[str, typer.Argument(help="The alias, e.g. live.")]


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def version_number(meta: MetadataStore, persona_id: str, spec: str) -> int:
    """A number, ``latest`` (the newest published version) or another alias, read now."""
    if spec.isascii() and spec.isdigit():
        return int(spec)
    if spec == "latest":
        try:
            return meta.get_published(persona_id, None).version
        except VersionNotFoundError:
            meta.get_persona(persona_id)
            raise
    try:
        return meta.aliases.get(persona_id, spec).version
    except AliasNotFoundError:
        raise InvalidInputError(
            f"{spec!r} is not a version number, 'latest' or an alias of {persona_id}"
        ) from None


def _current(meta: MetadataStore, persona_id: str, name: str) -> int:
    try:
        return meta.aliases.get(persona_id, name).version
    except AliasNotFoundError:
        return UNSET


def _move_doc(move: AliasMove) -> dict[str, Any]:
    return {"persona_id": move.persona_id, "alias": move.name, "from_version": move.from_version,
            "to_version": move.to_version, "actor": move.actor, "reason": move.reason,
            "at": move.at.isoformat()}


def _alias_doc(alias: Alias) -> dict[str, Any]:
    return {"persona_id": alias.persona_id, "alias": alias.name, "version": alias.version,
            "updated_at": alias.updated_at.isoformat(), "updated_by": alias.updated_by}


def _say_move(move: AliasMove, json_out: bool) -> None:
    if want_json(json_out):
        emit_json(_move_doc(move))
        return
    before = "(new)" if move.from_version is None else f"v{move.from_version}"
    after = "(deleted)" if move.to_version is None else f"v{move.to_version}"
    out().print(f"{move.persona_id} {move.name}: {before} -> {after} ({move.reason})")


def move_alias(persona_id: str, name: str, spec: str | None, reason: str, expected: int | None) -> AliasMove:
    """Move (or delete, spec None) on the stores; ``expected`` None: where it points now."""
    with metadata_store(settings()) as meta:
        number = None if spec is None else version_number(meta, persona_id, spec)
        believed = _current(meta, persona_id, name) if expected is None else expected
        return meta.aliases.move(persona_id, name, number, expected=believed, actor=actor(), reason=reason)


@app.command("set")
@handle_errors
def set_alias(  # noqa: PLR0917 - typer maps each parameter
    persona_id: Persona,
    name: Name,
    version: Annotated[str, typer.Argument(help="A version number, latest, or another alias.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the alias's history).")],
    expected: Annotated[int | None, typer.Option(
        "--expected", min=1, help="Move only if it points at this version now (default: where it "
        "points when this command reads it).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create or move an alias onto a published version. Refused (exit 2) for a version that is
    not published, a retracted one included; exit 1 alias_conflict if it moved meanwhile."""
    _say_move(move_alias(persona_id, name, version, reason, expected), json_out)


@app.command("get")
@handle_errors
def get_alias(persona_id: Persona, name: Name, json_out: JsonOpt = False) -> None:
    """Where the alias points (exit 3 when it does not exist)."""
    with metadata_store(settings()) as meta:
        alias = meta.aliases.get(persona_id, name)
    if want_json(json_out):
        emit_json(_alias_doc(alias))
        return
    out().print(f"{persona_id} {name}: v{alias.version} (moved {alias.updated_at:%Y-%m-%d %H:%M:%S} "
                f"by {alias.updated_by})")


@app.command("list")
@handle_errors
def list_aliases(persona_id: Persona, json_out: JsonOpt = False) -> None:
    """Every alias of the persona."""
    with metadata_store(settings()) as meta:
        aliases = meta.aliases.all(persona_id)
    if want_json(json_out):
        emit_json([_alias_doc(a) for a in aliases])
        return
    table = Table(title=f"{persona_id} aliases")
    for col in ("alias", "version", "moved", "by"):
        table.add_column(col)
    for a in aliases:
        table.add_row(a.name, f"v{a.version}", a.updated_at.isoformat(timespec="seconds"), a.updated_by)
    out().print(table)


@app.command("delete")
@handle_errors
def delete_alias(
    persona_id: Persona,
    name: Name,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the alias's history).")],
    json_out: JsonOpt = False,
) -> None:
    """Delete an alias (recorded in its history like a move)."""
    _say_move(move_alias(persona_id, name, None, reason, None), json_out)


@app.command("history")
@handle_errors
def history(
    persona_id: Persona,
    name: Name,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The alias's moves, newest first: when, who, from, to, why."""
    with metadata_store(settings()) as meta:
        meta.get_persona(persona_id)
        moves = meta.aliases.history(persona_id, name, limit=limit)
    if want_json(json_out):
        emit_json([_move_doc(m) for m in moves])
        return
    table = Table(title=f"{persona_id} {name} history")
    for col in ("at", "from", "to", "by", "reason"):
        table.add_column(col)
    for m in moves:
        before = "" if m.from_version is None else f"v{m.from_version}"
        after = "(deleted)" if m.to_version is None else f"v{m.to_version}"
        table.add_row(m.at.isoformat(timespec="seconds"), before, after, m.actor, m.reason)
    out().print(table)


@handle_errors
def promote_command(
    persona_id: Persona,
    version: Annotated[str, typer.Argument(help="The version to put live: a number, latest or an alias.")],
    to: Annotated[str, typer.Option("--to", help="The alias to move.")] = "live",
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (kept in the history).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Point an alias (default live) at a published version, after review. Renderers that pin
    the alias follow within their cache's TTL."""
    _say_move(move_alias(persona_id, to, version, reason or f"promote {version} to {to}", None), json_out)


@handle_errors
def rollback_command(
    persona_id: Persona,
    name: Annotated[str, typer.Argument(help="The alias to move back, e.g. live.")],
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (kept in the history).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Move an alias back to its previous target in its history (skipping versions retracted
    or erased since); exit 3 when there is none."""
    with metadata_store(settings()) as meta:
        move = meta.aliases.rollback(persona_id, name, actor=actor(), reason=reason or f"rollback {name}")
    _say_move(move, json_out)


@handle_errors
def retract_command(
    persona_id: Persona,
    version: Annotated[int, typer.Argument(min=1, help="The published version to withdraw.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (shown with the version and its pack).")],
    json_out: JsonOpt = False,
) -> None:
    """Withdraw a published version (as PyPI yanks a release): latest skips it, its number still
    serves the pack byte for byte with the retraction shown. Refused (exit 2, alias_in_use) while
    an alias points at it: move the alias first."""
    with metadata_store(settings()) as meta:
        record = meta.retract(persona_id, version, reason=reason)
    _say_retracted(record, json_out)


def _say_retracted(record: VersionRecord, json_out: bool) -> None:
    if want_json(json_out):
        emit_json({"persona_id": record.persona_id, "version": record.version, "status": record.status.value,
                   "retracted_at": record.retracted_at.isoformat() if record.retracted_at else None,
                   "retraction_reason": record.retraction_reason})
        return
    out().print(f"{record.persona_id} v{record.version} retracted: {record.retraction_reason}")
