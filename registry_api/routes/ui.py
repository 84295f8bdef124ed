"""A read-only pack viewer for people: server-rendered HTML, no JavaScript.

``GET /ui/personas/{persona_id}`` lists the versions; ``GET /ui/personas/{persona_id}/versions/{v}``
shows one version: for a published pack, the anchors of every camera mode with their images
(signed, expiring blob URLs), tags, quality and identity scores, the checks and the inputs
the build rejected with the reason; for any other status, the status, reasons and checks.
Same API-key auth as the JSON routes (scope ``read`` on the persona), or, for a browser, which
cannot send a key header, a viewer session cookie:

``GET /ui/personas/{persona_id}/open?v=..&exp=..&sig=..`` is a signed viewer link
(``persona-core ui-link``, :func:`persona_core.signing.sign_viewer_link`: the registry's signing
secret, never an API key). Opening it sets ``persona_viewer``, an HttpOnly, SameSite=Strict
cookie scoped to ``/ui/personas/{persona_id}`` that reads that persona for ``VIEWER_SESSION_S``,
and sends the browser on to the clean page URL with a same-site refresh (not a 30x: after a
link clicked in another site, a redirect chain started cross-site does not carry a Strict
cookie), with ``Referrer-Policy: no-referrer`` so the signature reaches no referrer; the refresh
replaces the link in the history. An expired, tampered or malformed link is 403
``bad_signature`` (a small HTML page for a browser). The images on the pages are signed URLs of
their own and need neither.

The pages are Jinja2 templates (``registry_api/templates/ui``) with autoescape on: every value
a template prints is escaped, so a reason or a name holding markup shows as text.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined

from persona_core.errors import SignatureError
from persona_core.pack import (
    PERSONA_ID_RE,
    AnchorMetadata,
    AnchorQuality,
    CheckResult,
    IdentityCalibration,
    PersonaPack,
    VoiceProfile,
)
from persona_core.signing import sign_viewer_session, verify_viewer_link
from persona_core.store.base import VersionStatus
from registry_api.auth import VIEWER_COOKIE, Principal, key_from_headers, viewer_principal
from registry_api.deps import ServiceDep, authenticate
from registry_api.routes.common import PROBLEMS, PersonaIdPath, VersionPath
from registry_api.service import RegistryService

log = logging.getLogger("registry_api.ui")
router = APIRouter(tags=["ui"], include_in_schema=True)

IMAGE_TTL_S = 3600
VIEWER_SESSION_S = 3600
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
# Images may come from the registry itself (HMAC URLs) or a presigned S3 host.
# frame-ancestors: no other site may frame the viewer (clickjacking).
_CSP = (
    "default-src 'none'; img-src 'self' https: http:; style-src 'unsafe-inline'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Cache-Control": "private, no-store",  # signed image URLs expire; never cache the page
    "X-Content-Type-Options": "nosniff",
}
_HTML: dict[int | str, Any] = {200: {"content": {"text/html": {}}}}


async def viewer(request: Request) -> Principal:
    """The caller: an API key when one is sent, else the viewer session cookie a signed link set."""
    cookie = request.cookies.get(VIEWER_COOKIE)
    if cookie and key_from_headers(request.headers.get) is None:
        service: RegistryService = request.app.state.service
        return viewer_principal(_secret(service), cookie)
    return await authenticate(request)


ViewerDep = Annotated[Principal, Depends(viewer)]


def register(app: FastAPI) -> None:
    """Mount the viewer on the registry app (needs ``app.state.service``)."""
    app.include_router(router)


@router.get(
    "/ui/personas/{persona_id}",
    response_class=HTMLResponse,
    responses={**_HTML, **PROBLEMS(401, 403, 404, 410)},
)
def persona_page(
    persona_id: PersonaIdPath, request: Request, who: ViewerDep, service: ServiceDep
) -> HTMLResponse:
    """The persona's versions, newest first, each linking to its page."""
    records = service.list_versions(who, persona_id)
    context = {"title": f"{persona_id} versions", "persona_id": persona_id, "records": records[::-1]}
    return _render(request, "persona.html", context)


@router.get(
    "/ui/personas/{persona_id}/versions/{version}",
    response_class=HTMLResponse,
    responses={**_HTML, **PROBLEMS(400, 401, 403, 404, 410)},
)
def version_page(
    persona_id: PersonaIdPath, version: VersionPath, request: Request, who: ViewerDep, service: ServiceDep
) -> HTMLResponse:
    """One version: the pack's anchors, scores, checks and rejected inputs (or why it has no pack)."""
    record = service.get_version(who, persona_id, version)
    title = f"{persona_id} v{record.version}"
    if record.status != VersionStatus.PUBLISHED:
        checks = [CheckResult.model_validate(c) for c in record.checks if isinstance(c, dict)]
        context = {"title": title, "record": record, "check_results": checks}
        return _render(request, "unpublished.html", context)
    pack = PersonaPack.model_validate_json(service.get_pack(who, persona_id, record.version).body)

    def image_url(ref: str) -> str:
        return _image_url(service, ref)

    context = {"title": title, "record": record, "pack": pack, "image_url": image_url}
    return _render(request, "published.html", context)


# A browser's entry, not an API operation: kept out of the OpenAPI document.
@router.get("/ui/personas/{persona_id}/open", response_class=HTMLResponse, include_in_schema=False)
def open_viewer_link(
    persona_id: str,
    request: Request,
    service: ServiceDep,
    *,
    v: Annotated[str | None, Query()] = None,
    exp: Annotated[str | None, Query()] = None,
    sig: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """Trade a signed viewer link for a viewer session cookie, then go to the clean page URL."""
    try:
        # Every way a link can be wrong is the one 403, never a 422 that tells which part.
        if not (PERSONA_ID_RE.fullmatch(persona_id) and exp and _UNIX_TIME.fullmatch(exp) and sig):
            raise SignatureError("the link lacks a valid exp and sig")
        if v is not None and not _VERSION.fullmatch(v):
            raise SignatureError("the link's version is not a version number")
        version = int(v) if v is not None else None
        verify_viewer_link(_secret(service), persona_id, version=version, expires=int(exp), sig=sig)
    except SignatureError as exc:
        if "text/html" not in request.headers.get("accept", ""):
            raise  # an API client gets the problem document
        log.info("refused viewer link for %s: %s", persona_id, exc)
        context = {"title": "link refused", "code": exc.code, "detail": str(exc)}
        return _render(request, "refused.html", context, status_code=403)
    target = f"/ui/personas/{persona_id}" + ("" if version is None else f"/versions/{version}")
    response = _render(
        request,
        "open.html",
        {"title": f"{persona_id} viewer", "target": target},
        headers={"Referrer-Policy": "no-referrer"},
    )
    response.set_cookie(
        VIEWER_COOKIE,
        sign_viewer_session(_secret(service), persona_id, VIEWER_SESSION_S),
        max_age=VIEWER_SESSION_S,
        path=f"/ui/personas/{persona_id}",
        secure=service.settings.public_base_url.startswith("https://") or request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _secret(service: RegistryService) -> bytes:
    return service.settings.signing_secret.get_secret_value().encode()


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return _TEMPLATES.TemplateResponse(
        request, f"ui/{name}", context, status_code=status_code, headers={**_HEADERS, **(headers or {})}
    )


def _image_url(service: RegistryService, ref: str) -> str:
    url = service.blobs.signed_url(ref, IMAGE_TTL_S)
    # HMAC URLs point at this registry: keep them relative so the page works whatever host
    # name the browser used to reach it.
    base = service.settings.public_base_url.rstrip("/")
    return url[len(base) :] if url.startswith(base + "/v1/blobs/") else url


def _scores(q: AnchorQuality) -> list[tuple[str, float]]:
    named = (
        ("overall", q.overall),
        ("identity", q.identity_consistency),
        ("sharpness", q.sharpness),
        ("exposure", q.exposure),
        ("face size", q.face_size),
        ("frontalness", q.frontalness),
        ("eyes open", q.eyes_open),
        ("mouth closed", q.mouth_closed),
        ("expression neutrality", q.expression_neutrality),
    )
    # Packs built before the face-mesh components lack the last ones.
    return [(name, value) for name, value in named if value is not None]


def _mesh_tags(md: AnchorMetadata) -> str:
    """The face-mesh and camera-mode tags with their confidences ("" for older packs)."""
    parts = []
    if md.expression_confidence is not None:
        parts.append(f"{md.expression_tag.value} {md.expression_confidence:.2f}")
    if md.eyes_open is not None:
        parts.append(f"eyes {'open' if md.eyes_open.value else 'closed'} {md.eyes_open.confidence:.2f}")
    if md.mouth_closed is not None:
        mouth = "closed" if md.mouth_closed.value else "open"
        parts.append(f"mouth {mouth} {md.mouth_closed.confidence:.2f}")
    if md.camera_mode is not None:
        cm = md.camera_mode
        why = "tagged by the uploader" if cm.source == "uploader" else f"{cm.framing} framing"
        parts.append(f"mode {cm.value.value} {cm.confidence:.2f} ({why})")
    return " · ".join(parts)


def _calibration_rows(cal: IdentityCalibration) -> list[tuple[str, str]]:
    loo = cal.leave_one_out
    rows = [
        ("source", cal.source + (f" - {cal.reason}" if cal.reason else "")),
        ("model", cal.model),
        ("leave-one-out", f"n {loo.n}, min {loo.min}, p5 {loo.p5}, median {loo.median}"),
        ("derived", f"warn {cal.derived_warn}, fail {cal.derived_fail}"),
        ("method", cal.method),
    ]
    if cal.impostor is not None:
        imp = cal.impostor
        rows.append(("impostor p99.9", f"{imp.p99_9} over {imp.pairs} pairs: {imp.set_name} ({imp.source})"))
    return rows


def _voice(v: VoiceProfile | None) -> str:
    if v is None:
        return "none"
    defaults = " (defaults applied)" if v.defaults_applied else ""
    return f"{v.embedding_model or v.provider_voice_id or 'configured'}{defaults}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("registry_api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the render instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(scores=_scores, mesh_tags=_mesh_tags, calibration_rows=_calibration_rows, voice=_voice)
    return env


_TEMPLATES = Jinja2Templates(env=_environment())
