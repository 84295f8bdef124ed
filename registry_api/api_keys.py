"""API-key management as plain functions (the CLI wires them to commands).

Keys are stored hashed by the metadata store; the plaintext exists only in the return value
of :func:`create_key`. A running registry honours a revocation within
``api_key_cache_ttl_s`` (see auth.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from persona_core.errors import AlreadyExistsError, InvalidInputError
from persona_core.pack import PersonaId
from persona_core.store.base import MetadataStore
from registry_api.auth import SCOPES
from registry_api.key_store import ApiKeyRecord, ApiKeyStore

_PERSONA_IDS = TypeAdapter(list[PersonaId])


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    scopes: list[str]
    persona_ids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> KeyInfo:
        return cls(
            key_id=record.key_id,
            name=record.name,
            scopes=list(record.scopes),
            persona_ids=list(record.persona_ids) if record.persona_ids is not None else None,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": self.scopes,
            "persona_ids": self.persona_ids,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def create_key(
    metadata: MetadataStore, name: str, scopes: list[str], persona_ids: list[str] | None = None, *,
    allow_duplicate: bool = False,
) -> tuple[KeyInfo, str]:
    """A new key and its plaintext (shown once). Scopes: read, build, admin (admin ⊇ build ⊇ read).

    A name is who or what the key is for, so a second unrevoked key under the same name is
    AlreadyExistsError (naming the one there) unless ``allow_duplicate``: rotating a key is
    create with ``allow_duplicate``, then revoke the old one."""
    if not name.strip():
        raise InvalidInputError("an API key needs a name")
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInputError(f"scopes must be a non-empty subset of {list(SCOPES)}; unknown: {unknown}")
    if persona_ids is not None:
        try:
            _PERSONA_IDS.validate_python(persona_ids)
        except ValidationError:
            raise InvalidInputError(f"not valid persona ids: {persona_ids}") from None
        if not persona_ids:
            raise InvalidInputError("persona_ids, when given, must name at least one persona")
    keys = ApiKeyStore.of(metadata)
    if not allow_duplicate:
        same = [k.key_id for k in keys.list_api_keys() if k.name == name.strip() and k.revoked_at is None]
        if same:
            raise AlreadyExistsError(
                f"an API key named {name.strip()!r} exists ({', '.join(same)}); revoke it first, "
                "or allow a second key under that name (rotation: create, then revoke the old one)"
            )
    record, plaintext = keys.create_api_key(name.strip(), sorted(set(scopes)), persona_ids)
    return KeyInfo.of(record), plaintext


def list_keys(metadata: MetadataStore) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first (no secrets)."""
    return [KeyInfo.of(r) for r in ApiKeyStore.of(metadata).list_api_keys()]


def revoke_key(metadata: MetadataStore, key_id: str) -> KeyInfo:
    """Revoke a key (idempotent); NotFoundError for an unknown id."""
    return KeyInfo.of(ApiKeyStore.of(metadata).revoke_api_key(key_id))
