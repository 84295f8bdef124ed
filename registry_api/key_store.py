"""The registry's API keys, in the ``api_keys`` table of the metadata database (the shared
migrations create it). Only a sha256 of each secret is stored; the plaintext
``pk_<key_id>_<secret>`` exists once, in the return value of :meth:`ApiKeyStore.create_api_key`."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from persona_core.errors import InvalidInputError, NotFoundError
from persona_core.store import tables as t
from persona_core.store.base import MetadataStore
from persona_core.store.engine import Database, aware, utc_now
from persona_core.store.metadata import SqlMetadataStore, check_persona_id

_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9:_.-]{0,63}$")
# Compared against when a key id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_SHA256 = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key without its secret; ``persona_ids=None`` means every persona."""

    key_id: str
    name: str
    scopes: list[str]
    persona_ids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class ApiKeyStore:
    """Create, verify, list and revoke API keys (constant-time verification)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def of(cls, metadata: MetadataStore) -> ApiKeyStore:
        """The key store in the same database (and connection pool) as ``metadata``."""
        if not isinstance(metadata, SqlMetadataStore):
            raise TypeError(f"API keys live in a SQL metadata store, not {type(metadata).__name__}")
        return cls(metadata.database)

    def create_api_key(
        self, name: str, scopes: list[str], persona_ids: list[str] | None = None
    ) -> tuple[ApiKeyRecord, str]:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInputError("API key name must be 1..200 characters")
        if (
            not isinstance(scopes, list)
            or not scopes
            or not all(isinstance(s, str) and _SCOPE_RE.fullmatch(s) for s in scopes)
        ):
            raise InvalidInputError("scopes must be a non-empty list like ['packs:read']")
        if persona_ids is not None:
            if not persona_ids:
                # A key restricted to no persona is always a mistake (e.g. an empty filter).
                raise InvalidInputError("persona_ids, when given, must name at least one persona")
            for pid in persona_ids:
                check_persona_id(pid)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)  # 32 random bytes: a fast hash is enough, no KDF needed
        record = ApiKeyRecord(
            key_id=key_id,
            name=name,
            scopes=sorted(set(scopes)),
            persona_ids=sorted(set(persona_ids)) if persona_ids is not None else None,
            created_at=utc_now(),
        )
        with self._db.tx(write=True) as conn:
            conn.execute(
                sa.insert(t.api_keys).values(
                    key_id=key_id,
                    name=name,
                    secret_sha256=_secret_hash(secret),
                    scopes=record.scopes,
                    persona_ids=record.persona_ids,
                    created_at=record.created_at,
                )
            )
        return record, f"pk_{key_id}_{secret}"

    def verify_api_key(self, plaintext: str) -> ApiKeyRecord | None:
        if not isinstance(plaintext, str) or len(plaintext) > 200:
            return None
        prefix, _, rest = plaintext.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != "pk" or not _KEY_ID_RE.fullmatch(key_id) or not secret:
            return None
        with self._db.tx(write=False) as conn:
            row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_id == key_id)).first()
        stored = row.secret_sha256 if row is not None else _DUMMY_SHA256
        matches = hmac.compare_digest(stored, _secret_hash(secret))
        if row is None or not matches or row.revoked_at is not None:
            return None
        return _api_key(row)

    def list_api_keys(self) -> list[ApiKeyRecord]:
        k = t.api_keys
        with self._db.tx(write=False) as conn:
            return [_api_key(r) for r in conn.execute(sa.select(k).order_by(k.c.created_at, k.c.key_id))]

    def revoke_api_key(self, key_id: str) -> ApiKeyRecord:
        k = t.api_keys
        with self._db.tx(write=True) as conn:
            row = conn.execute(self._db.locked(sa.select(k).where(k.c.key_id == key_id))).first()
            if row is None:
                raise NotFoundError(f"API key {key_id!r} not found")
            if row.revoked_at is None:
                conn.execute(sa.update(k).where(k.c.key_id == key_id).values(revoked_at=utc_now()))
                row = conn.execute(sa.select(k).where(k.c.key_id == key_id)).one()
        return _api_key(row)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        scopes=list(row.scopes),
        persona_ids=list(row.persona_ids) if row.persona_ids is not None else None,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        revoked_at=aware(row.revoked_at),
    )
