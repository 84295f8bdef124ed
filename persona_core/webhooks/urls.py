"""Which webhook URLs may be called (SSRF): http(s) only, no credentials in the URL, and every
address the host names must be public unless the deployment allows private targets.

Checked when a subscription is created and again before every delivery, because a DNS name can
start resolving to an internal address after it was accepted."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from persona_core.errors import InvalidInputError

__all__ = ["WebhookUrlRefusedError", "check_webhook_url"]

Resolver = Callable[..., list[tuple[Any, ...]]]
_MAX_URL = 2000


class WebhookUrlRefusedError(InvalidInputError):
    """A webhook URL that is malformed or reaches a non-public address."""

    code = "webhook_url_refused"


def check_webhook_url(url: str, *, allow_private: bool = False, resolve: Resolver | None = None) -> str:
    """Return ``url`` if it may be called; raise WebhookUrlRefusedError naming why not.

    Every address the host resolves to must be global (not loopback, private, link-local,
    shared, reserved, multicast or unspecified), unless ``allow_private``."""
    if len(url) > _MAX_URL:
        raise WebhookUrlRefusedError(f"webhook URL is longer than {_MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefusedError("webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise WebhookUrlRefusedError("webhook URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookUrlRefusedError("webhook URL has an invalid port") from None
    if allow_private:
        return url
    host = parts.hostname
    try:
        infos = (resolve or socket.getaddrinfo)(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise WebhookUrlRefusedError(f"webhook host {host!r} does not resolve") from None
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    if not addresses:
        raise WebhookUrlRefusedError(f"webhook host {host!r} does not resolve")
    for text in sorted(addresses):
        address = ipaddress.ip_address(text)
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            raise WebhookUrlRefusedError(
                f"webhook host {host!r} is a non-public address ({text}); "
                "set PERSONA_WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )
    return url
