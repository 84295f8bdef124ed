"""Personas: create, get, list, erase."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.routes.common import PROBLEMS, PersonaIdPath
from registry_api.schemas import (
    ErasureOut,
    ErasureRequest,
    PersonaCreate,
    PersonaOut,
    PersonaPage,
    PersonaSummary,
)

router = APIRouter(prefix="/v1/personas", tags=["personas"])


_LOCATION = {"description": "The persona's URL.", "required": True, "schema": {"type": "string"}}


@router.post(
    "",
    status_code=201,
    responses={201: {"headers": {"Location": _LOCATION}}, **PROBLEMS(400, 401, 403, 409, 413)},
)
def create_persona(
    body: PersonaCreate, who: PrincipalDep, service: ServiceDep, response: Response
) -> PersonaOut:
    """Create a persona (scope ``admin``); 409 ``already_exists`` if the id is taken, 413
    ``metadata_too_large`` past ``PERSONA_MAX_METADATA_BYTES`` (64 KiB of JSON by default)."""
    record = service.create_persona(who, body.persona_id, body.metadata)
    response.headers["Location"] = f"/v1/personas/{record.persona_id}"
    return PersonaOut.of(record)


@router.get("", responses=PROBLEMS(401, 403))
def list_personas(
    who: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="`next_after` of the previous page")] = None,
) -> PersonaPage:
    """Personas sorted by id, one page at a time, without metadata (scope ``read``; restricted
    keys see their own)."""
    records, next_after = service.list_personas(who, limit, after)
    return PersonaPage(items=[PersonaSummary.of(r) for r in records], next_after=next_after)


@router.get("/{persona_id}", responses=PROBLEMS(401, 403, 404, 410))
def get_persona(persona_id: PersonaIdPath, who: PrincipalDep, service: ServiceDep) -> PersonaOut:
    """One persona (scope ``read``); 410 ``persona_erased`` once its erasure has started."""
    return PersonaOut.of(service.get_persona(who, persona_id))


@router.delete("/{persona_id}", responses=PROBLEMS(400, 401, 403, 404, 422))
def erase_persona(
    persona_id: PersonaIdPath, body: ErasureRequest, who: PrincipalDep, service: ServiceDep
) -> ErasureOut:
    """Erase a persona and everything stored about it (scope ``admin``; a ``reason`` is required).

    Every version's inputs, crops, embeddings, packs and manifests are deleted, except blobs
    another persona also holds; a tombstone (id, versions, times, who, why) and an audit line
    stay. Every read of the persona answers 410 ``persona_erased`` from the moment it starts,
    from every worker once this returns. A second call resumes an interrupted erasure or
    reports the finished one (``already_erased``). The id is never handed out again.
    """
    report = service.erase(who, persona_id, None, body.reason)
    return ErasureOut.model_validate(report.as_dict())
