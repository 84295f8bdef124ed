"""``persona-core cache purge``: a renderer host forgets a persona's packs (after an erasure)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from persona_cli.common import JsonOpt, emit_json, handle_errors, out, settings, want_json

app = typer.Typer(help="The pack cache a renderer keeps on disk (PackCache).", no_args_is_help=True)


def default_cache_dir() -> Path:
    """The folder the CLI's own commands (``drift``) cache packs in."""
    return settings().resolved_cache_dir / "packs"


@app.command("purge")
@handle_errors
def purge(
    persona_id: Annotated[str, typer.Argument(help="The persona whose packs go.")],
    version: Annotated[
        list[int] | None,
        typer.Option("--version", "-v", min=1, help="Only this version (repeatable); default: all of them."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="The renderer's PackCache folder (default: PERSONA_CACHE_DIR/packs, where `drift` caches).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove a persona's cached packs (or only --version ones) from a pack cache folder, with
    any temp file a crashed write left. A running renderer also holds packs in memory: it drops
    them when the registry answers 410 for them or when it calls PackCache.purge (or
    follow_erasures on the registry's erasure feed); otherwise restart it."""
    from persona_core.runtime import PackCache  # noqa: PLC0415 - the runtime only for this command

    folder = cache_dir if cache_dir is not None else default_cache_dir()
    removed = PackCache(folder).purge(persona_id, version or None)
    doc = {"persona_id": persona_id, "cache_dir": str(folder), "removed_versions": removed}
    if want_json(json_out):
        emit_json(doc)
        return
    which = ", ".join(f"v{v}" for v in removed) or "nothing (no cached pack)"
    out().print(f"purged {persona_id} from {folder}: {which}", markup=False)
