"""Request and response bodies of the HTTP API (pydantic at the edge). The bodies the
Python client parses live in ``persona_core.api_models`` and are re-exported here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from persona_core.api_models import (
    AliasHistory,
    AliasList,
    AliasMoveOut,
    AliasOut,
    ErasureFeed,
    ErasureOut,
    ErasureSummary,
    PackDiff,
    PersonaOut,
    PersonaPage,
    PersonaSummary,
    ResolvedUrl,
    VersionList,
    VersionOut,
)
from persona_core.pack import BlobRefStr, PersonaId
from persona_core.signing import MAX_TTL_S

__all__ = [
    "AliasDelete",
    "AliasHistory",
    "AliasList",
    "AliasMoveOut",
    "AliasOut",
    "AliasRollback",
    "AliasSet",
    "AssetBytesRequest",
    "ErasureFeed",
    "ErasureOut",
    "ErasureRequest",
    "ErasureSummary",
    "GoneProblem",
    "LegacyResolveRequest",
    "PackDiff",
    "PersonaCreate",
    "PersonaOut",
    "PersonaPage",
    "PersonaSummary",
    "Problem",
    "ResolveRequest",
    "ResolvedUrl",
    "RetractRequest",
    "VersionList",
    "VersionOut",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonaCreate(_Body):
    persona_id: PersonaId
    metadata: dict[str, Any] = {}


class ErasureRequest(_Body):
    reason: str = Field(
        description="Why (e.g. the erasure request's ticket): kept in the erasure record and the audit "
        "log, never shown to read keys. Blank is refused (400 invalid_input).",
    )


_REASON = Field(min_length=1, max_length=2000, description="Why: kept in the alias's history.")
_EXPECTED = Field(
    default=None,
    ge=1,
    description="The version the caller believes the alias points at now; null: it must not exist "
    'yet. Required unless an `If-Match: "v<N>"` (or `If-None-Match: *`) header says it; a lost '
    "race is 409 `alias_conflict` (412 with If-Match).",
)


class AliasSet(_Body):
    version: int | str = Field(description="A version number, `latest`, or another alias (read now).")
    reason: str = _REASON
    expected_version: int | None = _EXPECTED


class AliasDelete(_Body):
    reason: str = _REASON
    expected_version: int | None = _EXPECTED


class AliasRollback(_Body):
    reason: str = _REASON


class RetractRequest(_Body):
    reason: str = Field(
        min_length=1,
        max_length=2000,
        description="Why: shown in the version record and the pack's Persona-Retracted header.",
    )


class ResolveRequest(_Body):
    """A blob ref to sign as an expiring URL (``POST /v1/assets/resolve``)."""

    ref: BlobRefStr
    mode: Literal["url"] = Field(
        default="url", description="Always `url`; the bytes themselves come from `POST /v1/assets/bytes`."
    )
    ttl_s: int = Field(default=3600, ge=1, le=MAX_TTL_S)


class LegacyResolveRequest(ResolveRequest):
    """What the resolve route parses: ``mode=bytes`` too, as clients written before
    ``POST /v1/assets/bytes`` send it (answered as before; not in the published contract)."""

    mode: Literal["url", "bytes"] = "url"  # type: ignore[assignment]


class AssetBytesRequest(_Body):
    """A blob ref whose bytes to send (``POST /v1/assets/bytes``)."""

    ref: BlobRefStr


class Problem(BaseModel):
    """An RFC 9457 problem document; ``code`` is stable and meant for programs."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None


class GoneProblem(Problem):
    """410: the persona or version was erased, or its erasure is under way. ``code`` is
    ``persona_erased`` or ``version_erased``."""

    started_at: datetime = Field(description="When the erasure started (from then on every read is 410).")
    erased_at: datetime | None = Field(description="When it finished; null while it is under way.")
