"""HMAC-signed, expiring blob URLs for stores that cannot presign (the local folder).
The registry serves them at ``GET /v1/blobs/{digest}?exp=..&sig=..``."""

from __future__ import annotations

import hashlib
import hmac
import time

from persona_core.errors import SignatureError
from persona_core.refs import parse_ref

MAX_TTL_S = 7 * 24 * 3600


def _sig(secret: bytes, digest: str, expires: int) -> str:
    return hmac.new(secret, f"{digest}:{expires}".encode(), hashlib.sha256).hexdigest()


def sign_blob_url(base_url: str, secret: bytes, ref: str, ttl_s: int, now: float | None = None) -> str:
    """A URL for ``ref`` under ``base_url`` that verifies for ``ttl_s`` seconds."""
    if not 0 < ttl_s <= MAX_TTL_S:
        raise SignatureError(f"ttl_s must be in 1..{MAX_TTL_S}")
    digest = parse_ref(ref).digest
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{base_url.rstrip('/')}/v1/blobs/{digest}?exp={expires}&sig={_sig(secret, digest, expires)}"


def verify_blob_signature(
    secret: bytes, digest: str, expires: int, sig: str, now: float | None = None
) -> None:
    """Raise SignatureError if the signature is wrong or expired."""
    if not hmac.compare_digest(_sig(secret, digest, expires), sig):
        raise SignatureError("signature does not match")
    if (time.time() if now is None else now) > expires:
        raise SignatureError("signed URL has expired")
