"""API keys at the edge: who is calling, and may they do this.

Scopes are ordered: ``admin`` implies ``build`` implies ``read``; ``promote`` (move aliases,
retract versions) implies ``read`` and is implied by ``admin`` only, so a build key cannot put
its own version live. A key may be restricted to a set of persona ids; it then sees and
touches only those personas.

Verified keys are cached in memory for ``api_key_cache_ttl_s`` (30 s by default), keyed by
the sha256 of the presented key, so the hot GET-pack route never waits on the database; past
``_CACHE_MAX`` keys the least recently used one makes room.
The price: a revoked key keeps working in an already-running process for up to that TTL.
Unknown keys are never cached, so a freshly created key works at once.

A wrong key (unknown, revoked, malformed) is logged with its client and key id, never its
secret, and counts against the client IP: past ``auth_failure_limit`` of them with less than
``auth_failure_window_s`` between one and the next, every call from that IP is answered 429
``too_many_auth_failures`` (gRPC ``RESOURCE_EXHAUSTED``) with ``Retry-After``, its key
unchecked, until a window passes without a try. A missing key is a plain 401 and counts
for nothing (a browser, a health probe). Counts are per process.

A browser cannot send a key header: the viewer pages also take the viewer session cookie
(``VIEWER_COOKIE``) that opening a signed viewer link sets (``persona-core ui-link``); it reads
one persona and nothing else (:func:`viewer_principal`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from persona_core.signing import verify_viewer_session
from registry_api.errors import (
    AuthenticationError,
    InsufficientScopeError,
    PersonaForbiddenError,
    TooManyAuthFailuresError,
)

log = logging.getLogger("registry_api.auth")

SCOPES = ("read", "build", "promote", "admin", "metrics")
# `metrics` is for a Prometheus scraper: /metrics only, nothing about any persona's content.
_IMPLIED = {
    "read": {"read"},
    "build": {"read", "build"},
    "promote": {"read", "promote"},
    "admin": {"read", "build", "promote", "admin", "metrics"},
    "metrics": {"metrics"},
}
API_KEY_HEADER = "x-api-key"
VIEWER_COOKIE = "persona_viewer"
_CACHE_MAX = 10_000
# Client IPs whose failures are remembered; past it the least recently failing one is dropped.
_THROTTLE_MAX = 100_000
_KEY_ID = re.compile(r"pk_([0-9a-f]{16})_.+", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]
    persona_ids: frozenset[str] | None = None  # None = every persona
    key_id: str = ""

    @classmethod
    def from_record(cls, record: Any) -> Principal:
        granted: set[str] = set()
        for scope in record.scopes:
            granted |= _IMPLIED.get(scope, set())
        ids = getattr(record, "persona_ids", None)
        # Only None means "every persona": an empty list (which the store now refuses, but an
        # older row may hold) restricts the key to nothing, never widens it to everything.
        restricted = frozenset(ids) if ids is not None else None
        return cls(
            name=record.name,
            scopes=frozenset(granted),
            persona_ids=restricted,
            key_id=str(getattr(record, "key_id", "")),
        )

    @property
    def actor(self) -> str:
        """Who this is in an alias's history: the API key's id (and its name, for people)."""
        return f"key:{self.key_id} ({self.name})" if self.key_id else f"key:{self.name}"

    def require(self, scope: str, persona_id: str | None = None) -> None:
        """Raise InsufficientScopeError / PersonaForbiddenError unless this call is allowed."""
        if scope not in self.scopes:
            raise InsufficientScopeError(f"this API key lacks the {scope!r} scope")
        if persona_id is not None and not self.may_see(persona_id):
            raise PersonaForbiddenError(f"this API key is not allowed to access persona {persona_id!r}")

    def may_see(self, persona_id: str) -> bool:
        return self.persona_ids is None or persona_id in self.persona_ids


def key_from_headers(get: Callable[[str], str | None]) -> str | None:
    """The presented key: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``."""
    key = get(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def viewer_principal(secret: bytes, cookie: str) -> Principal:
    """Who a viewer session cookie is: ``read`` on its one persona. SignatureError (403) when the
    cookie is malformed, tampered with or expired."""
    session = verify_viewer_session(secret, cookie)
    return Principal(
        name="viewer link", scopes=frozenset({"read"}), persona_ids=frozenset({session.persona_id})
    )


def key_id_of(key: str) -> str:
    """What a log may say about a presented key: its id (``pk_<id>_...``), never the secret."""
    match = _KEY_ID.fullmatch(key)
    return match.group(1) if match else "(not a pk_ key)"


class AuthThrottle:
    """Wrong keys per client IP (see module doc); ``limit`` of them, then 429 for ``window_s``."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        # Each failure re-inserts its client, which restarts that entry's TTL.
        self._failures: TTLCache[str, int] = TTLCache(maxsize=_THROTTLE_MAX, ttl=window_s)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise TooManyAuthFailuresError while ``client`` is throttled (and keep it so)."""
        if not self._failures:  # the common case, read without the lock
            return
        with self._lock:
            failures = self._failures.get(client, 0)
            if failures < self.limit:
                return
            self._failures[client] = failures + 1
        raise TooManyAuthFailuresError(
            f"too many wrong API keys from this client; retry after {self.retry_after_s} s",
            self.retry_after_s,
        )

    def failed(self, client: str, key: str) -> None:
        with self._lock:
            failures = self._failures.get(client, 0) + 1
            self._failures[client] = failures
        if failures < self.limit:
            log.warning(
                "wrong API key from %s: key id %s (%d of %d before 429)",
                client,
                key_id_of(key),
                failures,
                self.limit,
            )
        elif failures == self.limit:
            log.warning(
                "wrong API key from %s: key id %s; %d wrong keys, so every call from it "
                "is 429 until %d s pass without one",
                client,
                key_id_of(key),
                failures,
                self.retry_after_s,
            )

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.window_s))


class KeyVerifier:
    """Turns a presented key into a Principal, with a short positive cache (see module doc)."""

    def __init__(
        self, verify: Callable[[str], Any], ttl_s: float, throttle: AuthThrottle | None = None
    ) -> None:
        self._verify = verify
        self._ttl_s = ttl_s
        self.throttle = throttle or AuthThrottle(limit=20, window_s=60.0)
        # The event loop and worker threads share it, and a TTLCache read reorders its
        # entries: every access holds the lock (held for a dict lookup, never for I/O).
        self._cache: TTLCache[str, Principal] = TTLCache(maxsize=_CACHE_MAX, ttl=ttl_s)
        self._lock = threading.Lock()

    def cached(self, key: str | None, client: str = "") -> Principal | None:
        """The principal if the key is in the cache and fresh and ``client`` is not throttled;
        no I/O (safe on the event loop)."""
        if not key:
            return None
        self.throttle.check(client)
        fingerprint = _fingerprint(key)
        with self._lock:
            try:
                return self._cache[fingerprint]  # half the cost of TTLCache.get
            except KeyError:
                return None

    def verify(self, key: str | None, client: str = "") -> Principal:
        """Raise AuthenticationError for a missing, unknown or revoked key, and
        TooManyAuthFailuresError while ``client`` (its IP) is throttled. May hit the database."""
        if not key:
            raise AuthenticationError("an API key is required (X-API-Key or Authorization: Bearer)")
        principal = self.cached(key, client)
        if principal is not None:
            return principal
        record = self._verify(key)
        if record is None:
            self.throttle.failed(client, key)
            raise AuthenticationError("unknown or revoked API key")
        principal = Principal.from_record(record)
        if self._ttl_s > 0:
            fingerprint = _fingerprint(key)
            with self._lock:
                self._cache[fingerprint] = principal
        return principal

    def forget(self, keys: Iterable[str] = ()) -> None:
        """Drop cached keys (all of them when none are named), e.g. right after a revocation."""
        fingerprints = [_fingerprint(key) for key in keys]
        with self._lock:
            if not fingerprints:
                self._cache.clear()
            for fingerprint in fingerprints:
                self._cache.pop(fingerprint, None)


def _fingerprint(key: str) -> str:
    # Plaintext keys are never kept in memory longer than the request that presented them.
    return hashlib.sha256(key.encode()).hexdigest()
