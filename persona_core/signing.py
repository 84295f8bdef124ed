"""HMAC-signed, expiring URLs made with the registry's signing secret.

Blob URLs, for stores that cannot presign (the local folder): the registry serves them at
``GET /v1/blobs/{digest}?exp=..&sig=..``.

Viewer links, so a browser can open a persona's viewer pages without an API-key header:
``/ui/personas/{persona_id}/open?v=..&exp=..&sig=..`` (``v`` optional). Opening one trades it
for a viewer session, a cookie value ``{persona_id}.{exp}.{sig}`` that the viewer pages accept
for that persona only. Each kind signs its own labelled message, so no signature made for one
verifies as another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from persona_core.errors import SignatureError
from persona_core.refs import parse_ref

MAX_TTL_S = 7 * 24 * 3600
VIEWER_LINK_MAX_TTL_S = 24 * 3600
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SESSION = re.compile(r"([a-z0-9][a-z0-9_-]{0,62})\.([0-9]{1,12})\.([0-9a-f]{64})")


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


def _viewer_sig(secret: bytes, label: str, persona_id: str, version: int | None, expires: int) -> str:
    message = f"{label}:{persona_id}:{'' if version is None else version}:{expires}"
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def _expires(ttl_s: int, max_ttl_s: int, now: float | None) -> int:
    if not 0 < ttl_s <= max_ttl_s:
        raise SignatureError(f"ttl_s must be in 1..{max_ttl_s}")
    return int((time.time() if now is None else now) + ttl_s)


def _check(expected: str, sig: str, expires: int, now: float | None, what: str) -> None:
    # Only hex reaches compare_digest: it raises TypeError on non-ASCII str.
    if not (_HEX64.fullmatch(sig) and hmac.compare_digest(expected, sig)):
        raise SignatureError(f"{what} signature does not match")
    if (time.time() if now is None else now) > expires:
        raise SignatureError(f"{what} has expired")


def sign_viewer_link(
    base_url: str,
    secret: bytes,
    persona_id: str,
    *,
    version: int | None = None,
    ttl_s: int = 900,
    now: float | None = None,
) -> str:
    """A link under ``base_url`` that opens ``persona_id``'s viewer (at ``version``, else its
    version list) in a browser for ``ttl_s`` seconds (at most a day)."""
    expires = _expires(ttl_s, VIEWER_LINK_MAX_TTL_S, now)
    sig = _viewer_sig(secret, "viewer-link", persona_id, version, expires)
    query = ("" if version is None else f"v={version}&") + f"exp={expires}&sig={sig}"
    return f"{base_url.rstrip('/')}/ui/personas/{persona_id}/open?{query}"


def verify_viewer_link(
    secret: bytes, persona_id: str, *, version: int | None, expires: int, sig: str, now: float | None = None
) -> None:
    """Raise SignatureError unless the link's signature matches and it has not expired."""
    _check(_viewer_sig(secret, "viewer-link", persona_id, version, expires), sig, expires, now, "viewer link")


def sign_viewer_session(secret: bytes, persona_id: str, ttl_s: int, now: float | None = None) -> str:
    """A viewer session's cookie value: ``persona_id``'s viewer pages for ``ttl_s`` seconds."""
    expires = _expires(ttl_s, VIEWER_LINK_MAX_TTL_S, now)
    return f"{persona_id}.{expires}.{_viewer_sig(secret, 'viewer-session', persona_id, None, expires)}"


@dataclass(frozen=True, slots=True)
class ViewerSession:
    persona_id: str
    expires: int


def verify_viewer_session(secret: bytes, value: str, now: float | None = None) -> ViewerSession:
    """The persona a session cookie opens; SignatureError if it is malformed, tampered or expired."""
    match = _SESSION.fullmatch(value)
    if match is None:
        raise SignatureError("viewer session is malformed")
    persona_id, expires = match.group(1), int(match.group(2))
    expected = _viewer_sig(secret, "viewer-session", persona_id, None, expires)
    _check(expected, match.group(3), expires, now, "viewer session")
    return ViewerSession(persona_id, expires)
