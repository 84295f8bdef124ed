"""Signing webhook deliveries the Standard Webhooks way.

The secret is ``whsec_`` followed by base64 of 24 to 64 random bytes; the HMAC key is those
bytes. A delivery carries ``webhook-id`` (the event id), ``webhook-timestamp`` (Unix seconds)
and ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from persona_core.errors import InvalidInputError

__all__ = ["SECRET_PREFIX", "new_secret", "secret_key", "sign"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
_MIN_KEY, _MAX_KEY = 24, 64


def new_secret() -> str:
    """A fresh secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for; InvalidInputError for one not in the documented form."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInputError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("a webhook secret is whsec_ followed by base64") from None
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise InvalidInputError(f"a webhook secret holds {_MIN_KEY} to {_MAX_KEY} bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
