"""``persona-core ui-link``: a short-lived link that opens a persona's viewer in a browser.

A browser cannot send the API-key header the registry's routes want, so the link carries the
persona, an optional version, an expiry and an HMAC signature made with the registry's signing
secret (``PERSONA_SIGNING_SECRET``), never an API key. Opening it sets a viewer session cookie
for that persona's pages only and moves the browser on to the clean page URL.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from persona_cli.common import JsonOpt, emit_json, handle_errors, metadata_store, out, settings, want_json
from persona_core.pack import check_persona_id
from persona_core.settings import Settings
from persona_core.signing import VIEWER_LINK_MAX_TTL_S, sign_viewer_link

DEFAULT_TTL_S = 900


def viewer_link(
    s: Settings,
    persona_id: str,
    version: int | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """The signed viewer link on the registry's public base URL (``PERSONA_PUBLIC_BASE_URL``)."""
    secret = s.signing_secret.get_secret_value().encode()
    return sign_viewer_link(s.public_base_url, secret, persona_id, version=version, ttl_s=ttl_s, now=now)


@handle_errors
def ui_link(
    persona_id: Annotated[str, typer.Argument(help="The persona whose viewer the link opens.")],
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=1, help="Open this version's page (default: the version list)."),
    ] = None,
    ttl: Annotated[
        int,
        typer.Option("--ttl", min=1, max=VIEWER_LINK_MAX_TTL_S, help="Seconds the link can be opened."),
    ] = DEFAULT_TTL_S,
    json_out: JsonOpt = False,
) -> None:
    """Print a signed link that opens the persona's viewer pages in a browser, no API key needed.

    The link works for --ttl seconds (15 minutes by default, a day at most); opening it gives the
    browser an hour on that persona's viewer pages and nothing else. Anyone holding the link
    can open it until then: share it as you would the pack. Exits 3 for an unknown persona or
    version.
    """
    s = settings()
    check_persona_id(persona_id)
    with metadata_store(s) as meta:  # an unknown persona fails here, not later in a browser
        meta.get_persona(persona_id)
        if version is not None:
            meta.get_version(persona_id, version)
    now = time.time()
    url = viewer_link(s, persona_id, version, ttl, now=now)
    if want_json(json_out):
        emit_json({"persona_id": persona_id, "version": version, "url": url, "expires_at": int(now + ttl)})
        return
    out().print(url, markup=False, highlight=False)
