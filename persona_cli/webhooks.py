"""``persona-core webhooks add|list|remove`` and ``persona-core events serve``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer
from rich.table import Table

from persona_cli.common import JsonOpt, emit_json, handle_errors, metadata_store, out, settings, want_json
from persona_core.store.base import MetadataStore
from persona_core.store.engine import Database
from persona_core.webhooks import Dispatcher, WebhookStore, check_webhook_url

app = typer.Typer(help="Webhook subscriptions (docs/webhooks.md).", no_args_is_help=True)
events_app = typer.Typer(help="The event dispatcher.", no_args_is_help=True)


def _db(meta: MetadataStore) -> Database:
    database = getattr(meta, "database", None)
    if not isinstance(database, Database):
        raise TypeError("webhooks live in a SQL metadata store")
    return database


@app.command("add")
@handle_errors
def add(  # noqa: PLR0917 - typer passes options by position
    url: Annotated[str, typer.Argument(help="http(s) URL; private ones need PERSONA_WEBHOOK_ALLOW_PRIVATE.")],
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Event type; repeatable (default all).")
    ] = None,
    persona: Annotated[
        list[str] | None, typer.Option("--persona", "-p", help="Persona; repeatable (default all).")
    ] = None,
    secret: Annotated[str | None, typer.Option(help="whsec_<base64> secret (default: generated).")] = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Subscribe a URL. The signing secret is printed once: keep it now."""
    s = settings()
    check_webhook_url(url, allow_private=s.webhook_allow_private)
    with metadata_store(s) as meta:
        sub = WebhookStore(_db(meta)).create(
            url, created_by="cli", secret=secret, event_types=event or None, persona_ids=persona or None,
            description=description,
        )
    if want_json(json_out):
        emit_json({**sub.public(), "secret": sub.secret})
        return
    console = out()
    console.print(f"created webhook {sub.id} -> {sub.url}")
    console.print("signing secret (shown once, store it now):")
    console.print(sub.secret, markup=False)


@app.command("list")
@handle_errors
def list_(json_out: JsonOpt = False) -> None:
    """Every subscription (no secrets)."""
    with metadata_store(settings()) as meta:
        subs = WebhookStore(_db(meta)).subscriptions()
    if want_json(json_out):
        emit_json([s.public() for s in subs])
        return
    table = Table(title="webhooks")
    for col in ("id", "url", "events", "personas", "enabled", "failures in a row"):
        table.add_column(col)
    for s in subs:
        table.add_row(s.id, s.url, ",".join(s.event_types or ["all"]), ",".join(s.persona_ids or ["all"]),
                      "yes" if s.enabled else f"no ({s.disabled_reason})", str(s.consecutive_failures))
    out().print(table)


@app.command("remove")
@handle_errors
def remove(webhook_id: Annotated[str, typer.Argument(help="The subscription id (wh_...).")]) -> None:
    """Remove a subscription with its pending deliveries and delivery log."""
    with metadata_store(settings()) as meta:
        WebhookStore(_db(meta)).delete(webhook_id)
    out().print(f"removed webhook {webhook_id}")


@events_app.command("serve")
@handle_errors
def serve() -> None:
    """Deliver webhooks until interrupted (as `persona-core serve` does in its own process)."""
    s = settings()
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with metadata_store(s) as meta:
        out().print("dispatching webhooks (Ctrl-C to stop)")
        Dispatcher(_db(meta), s).run(stop)
