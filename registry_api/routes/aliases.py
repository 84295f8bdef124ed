"""Aliases: named pointers per persona (``live``, ``staging``) that renderer fleets pin.

Moving one is a compare-and-set on the version the caller believes it points at: an
``If-Match: "v<N>"`` header (``If-None-Match: *`` for a new alias) or the body's
``expected_version``. A lost race is 412 (with If-Match) or 409 ``alias_conflict``, never a
silent overwrite; a move that states no belief is 428 ``precondition_required``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from persona_core.errors import AliasConflictError, InvalidInputError
from persona_core.store.aliases import UNSET
from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.errors import AliasPreconditionFailedError, PreconditionRequiredError
from registry_api.routes.common import PROBLEMS, AliasNamePath, PersonaIdPath
from registry_api.schemas import (
    AliasDelete,
    AliasHistory,
    AliasList,
    AliasMoveOut,
    AliasOut,
    AliasRollback,
    AliasSet,
)

router = APIRouter(prefix="/v1/personas/{persona_id}/aliases", tags=["aliases"])

IfMatch = Annotated[str | None, Header(description='`"v<N>"`: move only if the alias points at vN now.')]
IfNoneMatch = Annotated[str | None, Header(description="`*`: create only if the alias does not exist yet.")]
_ETAG = {
    "ETag": {
        "description": '`"v<N>"`: the version it points at, for a move\'s If-Match.',
        "required": True,
        "schema": {"type": "string"},
    }
}


@router.get("", responses=PROBLEMS(401, 403, 404, 410))
def list_aliases(persona_id: PersonaIdPath, who: PrincipalDep, service: ServiceDep) -> AliasList:
    """Every alias of the persona and the version it points at (scope ``read``)."""
    aliases = service.list_aliases(who, persona_id)
    return AliasList(persona_id=persona_id, items=[AliasOut.of(a) for a in aliases])


@router.get("/{name}", responses={200: {"headers": _ETAG}, **PROBLEMS(401, 403, 404, 410)})
def get_alias(
    persona_id: PersonaIdPath, name: AliasNamePath, response: Response, who: PrincipalDep, service: ServiceDep
) -> AliasOut:
    """Where the alias points (scope ``read``); ETag ``"v<N>"``, for a move's If-Match. 404
    ``alias_not_found`` when it does not exist."""
    alias = service.get_alias(who, persona_id, name)
    response.headers["ETag"] = f'"v{alias.version}"'
    return AliasOut.of(alias)


@router.put(
    "/{name}", responses={200: {"headers": _ETAG}, **PROBLEMS(400, 401, 403, 404, 409, 410, 412, 428)}
)
def set_alias(  # noqa: PLR0917 - FastAPI maps each parameter
    persona_id: PersonaIdPath,
    name: AliasNamePath,
    body: AliasSet,
    response: Response,
    who: PrincipalDep,
    service: ServiceDep,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> AliasMoveOut:
    """Create or move the alias onto a published version (scope ``promote``; ``version`` may be
    a number, ``latest`` or another alias). The move, its actor (the API key) and reason go to
    the alias's history. 409 ``invalid_status_transition`` for a version that is not published
    (a retracted one included); 409/412 ``alias_conflict`` when the alias moved meanwhile."""
    expected, by_header = _expected(if_match, if_none_match, body.expected_version, body)
    try:
        move = service.move_alias(who, persona_id, name, body.version, expected=expected, reason=body.reason)
    except AliasConflictError as exc:
        if by_header:
            raise AliasPreconditionFailedError(str(exc)) from None
        raise
    response.headers["ETag"] = f'"v{move.to_version}"'
    return AliasMoveOut.of(move)


@router.delete("/{name}", responses=PROBLEMS(400, 401, 403, 404, 409, 410, 412, 428))
def delete_alias(  # noqa: PLR0917 - FastAPI maps each parameter
    persona_id: PersonaIdPath,
    name: AliasNamePath,
    body: AliasDelete,
    who: PrincipalDep,
    service: ServiceDep,
    if_match: IfMatch = None,
) -> AliasMoveOut:
    """Delete the alias (scope ``promote``), recorded in its history like a move. Readers of it
    get 400 ``invalid_input`` (no such version spec) once their cached target expires."""
    expected, by_header = _expected(if_match, None, body.expected_version, body)
    try:
        move = service.move_alias(who, persona_id, name, None, expected=expected, reason=body.reason)
    except AliasConflictError as exc:
        if by_header:
            raise AliasPreconditionFailedError(str(exc)) from None
        raise
    return AliasMoveOut.of(move)


@router.post("/{name}/rollback", responses=PROBLEMS(400, 401, 403, 404, 409, 410))
def rollback_alias(
    persona_id: PersonaIdPath,
    name: AliasNamePath,
    body: AliasRollback,
    who: PrincipalDep,
    service: ServiceDep,
) -> AliasMoveOut:
    """Move the alias back to its previous target in its history, skipping versions retracted or
    erased since (scope ``promote``); 404 ``alias_not_found`` when there is none to go back to."""
    return AliasMoveOut.of(service.rollback_alias(who, persona_id, name, body.reason))


@router.get("/{name}/history", responses=PROBLEMS(401, 403, 404, 410))
def alias_history(
    persona_id: PersonaIdPath,
    name: AliasNamePath,
    who: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AliasHistory:
    """The alias's moves, newest first: who, when, from, to, why (scope ``read``)."""
    moves = service.alias_history(who, persona_id, name, limit)
    return AliasHistory(persona_id=persona_id, items=[AliasMoveOut.of(m) for m in moves])


def _expected(
    if_match: str | None,
    if_none_match: str | None,
    expected_version: int | None,
    body: AliasSet | AliasDelete,
) -> tuple[int, bool]:
    """The version the caller believes the alias points at (UNSET: none), and whether a header said it."""
    if if_match is not None:
        tag = if_match.strip().removeprefix("W/").strip('"')
        number = tag.removeprefix("v")
        if not (tag.startswith("v") and number.isascii() and number.isdigit() and len(number) <= 9):
            raise InvalidInputError(f'If-Match must be "v<N>" (the alias\'s ETag), got {if_match!r}')
        return int(number), True
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidInputError(f"If-None-Match on an alias must be *, got {if_none_match!r}")
        return UNSET, True
    if "expected_version" in body.model_fields_set:
        return (UNSET if expected_version is None else expected_version), False
    raise PreconditionRequiredError(
        'say where you believe the alias points: If-Match: "v<N>", If-None-Match: * or expected_version'
    )
