"""The registry's response bodies, shared by the registry (which answers with them) and
``persona_core.client`` (which parses them), so the client has no dependency on the server.

A class docstring here is the schema's description in the registry's OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from persona_core.store.base import PersonaRecord, VersionRecord, VersionStatus

if TYPE_CHECKING:  # the store module pulls in SQLAlchemy; the client does not need it
    from persona_core.store.aliases import Alias, AliasMove

__all__ = [
    "AliasHistory",
    "AliasList",
    "AliasMoveOut",
    "AliasOut",
    "AnchorChange",
    "AnchorRef",
    "CheckChange",
    "ErasureFeed",
    "ErasureOut",
    "ErasureSummary",
    "FieldChange",
    "InputRef",
    "ModeDiff",
    "PackDiff",
    "PersonaOut",
    "PersonaPage",
    "PersonaSummary",
    "ResolvedUrl",
    "VersionList",
    "VersionOut",
    "VersionStatus",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonaOut(_Body):
    persona_id: str
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, record: PersonaRecord) -> PersonaOut:
        return cls(persona_id=record.persona_id, metadata=record.metadata, created_at=record.created_at)


class PersonaSummary(_Body):
    """A persona in a list: no metadata, so a page stays small (GET the persona for it)."""

    persona_id: str
    created_at: datetime

    @classmethod
    def of(cls, record: PersonaRecord) -> PersonaSummary:
        return cls(persona_id=record.persona_id, created_at=record.created_at)


class PersonaPage(_Body):
    items: list[PersonaSummary]
    next_after: str | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class VersionOut(_Body):
    persona_id: str
    version: int
    status: VersionStatus
    reasons: list[str]
    checks: list[dict[str, Any]]
    inputs: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    content_hash: str | None
    status_url: str
    pack_url: str | None = Field(description="Set once the version is published (and kept once retracted).")
    retracted_at: datetime | None = Field(
        default=None, description="When it was retracted: `latest` skips it, its number still serves it."
    )
    retraction_reason: str | None = None

    @classmethod
    def of(cls, record: VersionRecord) -> VersionOut:
        base = f"/v1/personas/{record.persona_id}/versions/{record.version}"
        published = record.status in (VersionStatus.PUBLISHED, VersionStatus.RETRACTED)
        return cls(
            persona_id=record.persona_id,
            version=record.version,
            status=record.status,
            reasons=list(record.reasons),
            checks=list(record.checks),
            inputs=dict(record.inputs),
            created_at=record.created_at,
            updated_at=record.updated_at,
            published_at=record.published_at,
            content_hash=record.content_hash,
            status_url=base,
            pack_url=f"{base}/pack" if published else None,
            retracted_at=record.retracted_at,
            retraction_reason=record.retraction_reason,
        )


class VersionList(_Body):
    persona_id: str
    items: list[VersionOut]


class AliasOut(_Body):
    """A named pointer to a published version (``live``); its ETag is ``"v<N>"``."""

    persona_id: str
    name: str
    version: int
    updated_at: datetime
    updated_by: str = Field(description="Who moved it last: `key:<key id> (<name>)` or `cli:<user>`.")
    pack_url: str

    @classmethod
    def of(cls, alias: Alias) -> AliasOut:
        return cls(
            persona_id=alias.persona_id,
            name=alias.name,
            version=alias.version,
            updated_at=alias.updated_at,
            updated_by=alias.updated_by,
            pack_url=f"/v1/personas/{alias.persona_id}/versions/{alias.name}/pack",
        )


class AliasList(_Body):
    persona_id: str
    items: list[AliasOut]


class AliasMoveOut(_Body):
    """One move of an alias: who, when, from, to, why (``to_version`` null: deleted)."""

    persona_id: str
    name: str
    from_version: int | None = Field(description="null: the alias was created by this move.")
    to_version: int | None = Field(description="null: the alias was deleted by this move.")
    actor: str
    reason: str
    at: datetime

    @classmethod
    def of(cls, move: AliasMove) -> AliasMoveOut:
        return cls(
            persona_id=move.persona_id,
            name=move.name,
            from_version=move.from_version,
            to_version=move.to_version,
            actor=move.actor,
            reason=move.reason,
            at=move.at,
        )


class AliasHistory(_Body):
    persona_id: str
    items: list[AliasMoveOut] = Field(description="Newest first.")


class ResolvedUrl(_Body):
    ref: str
    url: str
    expires_at: int = Field(description="Unix time after which the URL stops working.")


class ErasureOut(_Body):
    """What an erasure removed (``DELETE`` of a persona or a version). A second call resumes an
    interrupted erasure or reports the finished one with ``already_erased``."""

    persona_id: str
    version: int | None = Field(description="The erased version; null when the whole persona was erased.")
    versions: list[int] = Field(description="Every version the erasure covers.")
    state: Literal["erasing", "erased"]
    actor: str = Field(description="Who asked: the API key's name, or the CLI's user.")
    started_at: datetime
    finished_at: datetime | None
    blobs_deleted: int
    objects_deleted: int
    kept_shared: int = Field(description="Blobs kept because another persona or version still holds them.")
    already_erased: bool
    note: str = Field(description="What the registry cannot erase: exported .personapack archives.")


class ErasureSummary(_Body):
    """A finished erasure as renderer fleets see it: which packs to purge. No reason, no actor."""

    persona_id: str
    version: int | None = Field(description="null: the whole persona (every version) was erased.")
    versions: list[int]
    started_at: datetime
    erased_at: datetime


class ErasureFeed(_Body):
    items: list[ErasureSummary] = Field(description="Oldest first, by erased_at.")
    next_since: datetime | None = Field(
        description="Pass as `since` for the next page; null when this page holds the last one."
    )


class FieldChange(_Body):
    """One value that differs between two packs: its dotted path, the value before and after
    (null where the field is absent on that side)."""

    path: str
    before: Any = None
    after: Any = None


class AnchorRef(_Body):
    """An anchor, named by its image blob (the same photo has the same ref in every version)."""

    image_ref: str
    anchor_id: str
    source_sha256: str
    canonical: bool


class AnchorChange(_Body):
    """An anchor both versions keep (same image), with what changed in its tags."""

    image_ref: str
    from_anchor_id: str
    to_anchor_id: str
    changes: list[FieldChange]


class ModeDiff(_Body):
    camera_mode: str
    added: list[AnchorRef]
    removed: list[AnchorRef]
    kept: list[AnchorChange]


class CheckChange(_Body):
    """A check's result in each version (null: the version has no such check)."""

    name: str
    severity: str
    from_passed: bool | None
    to_passed: bool | None

    @property
    def changed(self) -> bool:
        return self.from_passed != self.to_passed


class InputRef(_Body):
    name: str
    sha256: str
    kind: str
    accepted: bool


class PackDiff(_Body):
    """What changed from one published version of a persona to another (``GET .../diff``)."""

    persona_id: str
    from_version: int
    to_version: int
    from_content_hash: str | None
    to_content_hash: str | None
    same_content: bool = Field(description="The two packs have the same content hash.")
    anchors: list[ModeDiff] = Field(description="Per camera mode, anchors matched by image_ref.")
    centroid_cosine: float | None = Field(
        description="Cosine between the two identity centroids; null when either could not be read."
    )
    identity: list[FieldChange] = Field(description="Identity and style model changes.")
    refresh_policy: list[FieldChange] = Field(description="Drift lines and their calibration.")
    models: list[FieldChange] = Field(description="Models and weights (provenance), by model name.")
    behavior: list[FieldChange]
    voice: list[FieldChange]
    thresholds: list[FieldChange] = Field(description="The builder thresholds each pack recorded.")
    inputs_added: list[InputRef] = Field(description="Inputs (by sha256) only the `to` version has.")
    inputs_removed: list[InputRef] = Field(description="Inputs (by sha256) only the `from` version has.")
    checks: list[CheckChange] = Field(description="Every check of either version, with both results.")
