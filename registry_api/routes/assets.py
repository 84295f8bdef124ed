"""Assets: resolve a blob ref to a signed URL or its bytes; serve HMAC-signed local blobs."""

from __future__ import annotations

import json
import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from persona_core.errors import SignatureError
from persona_core.uploads import SNIFFED_MEDIA_TYPES, sniff
from registry_api.deps import ServiceDep, authenticate
from registry_api.routes.common import PROBLEMS
from registry_api.schemas import ResolvedUrl, ResolveRequest
from registry_api.service import AssetBytes, RegistryService, SignedUrl

router = APIRouter(tags=["assets"])

OCTET_STREAM = "application/octet-stream"
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
# A blob is served as what its bytes are (the upload gate's magic numbers), so a browser shows
# a JPEG behind a signed URL instead of downloading it; anything else is octet-stream.
_BLOB_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}}
                 for t in (*SNIFFED_MEDIA_TYPES, OCTET_STREAM)}


def blob_media_type(data: bytes) -> str:
    sniffed = sniff(data)
    return sniffed[1] if sniffed else OCTET_STREAM


# The body is documented here and parsed in the route (see resolve_asset); the schema itself
# is added to the components by registry_api.main._openapi.
_RESOLVE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ResolveRequest"}}},
    }
}


@router.post(
    "/v1/assets/resolve",
    response_model=ResolvedUrl,
    openapi_extra=_RESOLVE_BODY,
    responses={
        200: {
            "description": "`mode=url`: a signed, expiring URL. `mode=bytes`: the blob itself, typed "
                           "by its bytes (image/jpeg, image/png, ...; application/octet-stream otherwise).",
            "content": _BLOB_CONTENT,
        },
        **PROBLEMS(400, 401, 403, 404, 410, 413),
        422: {**PROBLEMS(422)[422], "description": "Validation Error"},
    },
)
async def resolve_asset(request: Request) -> Response:
    """A blob ref (``sha256:<hex>[#row]``) as a signed URL or as bytes (scope ``read``).

    S3 stores answer with a presigned URL, the local store with an HMAC URL served by
    ``GET /v1/blobs/{digest}``. Keys restricted to personas resolve only their packs' refs.
    410 while only versions being erased hold the blob; 404 ``blob_not_found`` once it is gone.
    """
    # A hot route, like GET pack: no injected dependencies or body parameter (FastAPI's
    # resolver cost more than signing). The body gets the same 422 a body model would give.
    service: RegistryService = request.app.state.service
    who = await authenticate(request)
    body = _resolve_request(await request.body())
    # A blob seen before signs in the event loop; anything that may touch a store (exists,
    # bytes, a restricted key's pack scan) goes to a worker thread.
    asset: SignedUrl | AssetBytes | None = service.cached_resolve(who, body.ref, body.mode, body.ttl_s)
    if asset is None:
        asset = await run_in_threadpool(service.resolve_asset, who, body.ref, body.mode, body.ttl_s)
    if isinstance(asset, AssetBytes):
        return Response(asset.data, media_type=blob_media_type(asset.data), headers={"X-Blob-Ref": asset.ref})
    doc = {"ref": asset.ref, "url": asset.url, "expires_at": asset.expires_at}
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


def _resolve_request(raw: bytes) -> ResolveRequest:
    try:
        return ResolveRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


@router.get(
    "/v1/blobs/{digest}",
    response_class=Response,
    openapi_extra={"security": []},
    responses={
        200: {"description": "The blob, typed by its bytes (image/jpeg, image/png, ...; "
                             "application/octet-stream otherwise).", "content": _BLOB_CONTENT},
        **PROBLEMS(403, 404),
    },
)
def signed_blob(
    digest: Annotated[str, Path(description="sha256 of the blob, 64 lowercase hex")],
    service: ServiceDep,
    exp: Annotated[str | None, Query(description="expiry, unix time")] = None,
    sig: Annotated[str | None, Query(description="HMAC-SHA256 signature, 64 lowercase hex")] = None,
) -> Response:
    """A blob behind a signed URL from ``/v1/assets/resolve``; the signature is the credential.

    403 ``bad_signature`` when the URL is tampered with, expired, or lacks ``exp`` or ``sig``.
    """
    # Every way a URL can be wrong is the one documented 403, never a 422 that tells which part.
    if exp is None or sig is None or not _UNIX_TIME.fullmatch(exp):
        raise SignatureError("the URL lacks a valid exp and sig")
    data = service.signed_blob(digest, int(exp), sig)
    return Response(
        data,
        media_type=blob_media_type(data),
        headers={"ETag": f'"{digest}"', "Cache-Control": "private, max-age=300"},
    )
