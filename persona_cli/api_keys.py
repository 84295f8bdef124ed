"""``persona-core keys create|list|revoke``: API keys for the registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, metadata_store, out, settings, want_json

app = typer.Typer(help="Create, list and revoke registry API keys.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="read, build or admin (admin > build > read); repeatable."),
    ] = None,
    persona: Annotated[
        list[str] | None,
        typer.Option("--persona", "-p", help="Restrict the key to these personas; repeatable."),
    ] = None,
    allow_duplicate: Annotated[
        bool, typer.Option("--allow-duplicate", help="Create it even when an unrevoked key has this name "
                           "(rotation: create, then revoke the old key).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a key. Its secret is printed once and never stored: keep it now. A name already
    held by an unrevoked key is refused (exit 2, already_exists) unless --allow-duplicate."""
    from registry_api.api_keys import create_key  # noqa: PLC0415 - the api extra, only when used

    with metadata_store(settings()) as meta:
        info, plaintext = create_key(meta, name, scope or ["read"], persona or None,
                                     allow_duplicate=allow_duplicate)
    if want_json(json_out):
        emit_json({**info.to_dict(), "api_key": plaintext})
        return
    console = out()
    console.print(f"created key {info.key_id} ({info.name}) scopes {','.join(info.scopes)}")
    console.print("API key (shown once, store it now):")
    console.print(plaintext, markup=False)


@app.command("list")
@handle_errors
def list_(json_out: JsonOpt = False) -> None:
    """Every key, revoked ones included (no secrets)."""
    from registry_api.api_keys import list_keys  # noqa: PLC0415 - the api extra, only when used

    with metadata_store(settings()) as meta:
        keys = list_keys(meta)
    if want_json(json_out):
        emit_json([k.to_dict() for k in keys])
        return
    table = Table(title="API keys")
    for col in ("key id", "name", "scopes", "personas", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.key_id,
            k.name,
            ",".join(k.scopes),
            ",".join(k.persona_ids) if k.persona_ids is not None else "all",
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
        )
    out().print(table)


@app.command("revoke")
@handle_errors
def revoke(key_id: str, json_out: JsonOpt = False) -> None:
    """Revoke a key (idempotent). Running registries stop accepting it within their key cache TTL."""
    from registry_api.api_keys import revoke_key  # noqa: PLC0415 - the api extra, only when used

    with metadata_store(settings()) as meta:
        info = revoke_key(meta, key_id)
    if want_json(json_out):
        emit_json(info.to_dict())
    else:
        out().print(f"revoked {info.key_id} ({info.name}) at {info.revoked_at}")
