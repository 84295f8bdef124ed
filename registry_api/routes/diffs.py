"""What changed between two versions of a persona."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.routes.common import PROBLEMS, PersonaIdPath
from registry_api.schemas import PackDiff

router = APIRouter(prefix="/v1/personas/{persona_id}", tags=["versions"])

_SPEC = "A version number or `latest` (or an alias)."


@router.get("/diff", responses=PROBLEMS(400, 401, 403, 404, 410))
def diff_versions(
    persona_id: PersonaIdPath,
    who: PrincipalDep,
    service: ServiceDep,
    from_: Annotated[str, Query(alias="from", description=_SPEC)],
    to: Annotated[str, Query(description=_SPEC)],
) -> PackDiff:
    """What changed from one published version to another (scope ``read``): anchors added,
    removed and kept per camera mode (matched by image) with their tag changes, the cosine
    between the two identity centroids, drift lines and their calibration, models and
    weights, behaviour and voice, builder thresholds, inputs (by sha256) and check results.

    404 ``pack_not_published`` when either side is not published, ``version_not_found`` /
    ``persona_not_found`` when it does not exist; 410 ``version_erased`` / ``persona_erased``.
    """
    return service.diff(who, persona_id, from_, to)
