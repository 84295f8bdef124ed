"""Assets: resolve a blob ref to a signed URL or its bytes; serve HMAC-signed local blobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from registry_api.deps import PrincipalDep, ServiceDep
from registry_api.routes.common import PROBLEMS
from registry_api.schemas import ResolvedUrl, ResolveRequest
from registry_api.service import AssetBytes

router = APIRouter(tags=["assets"])


@router.post(
    "/v1/assets/resolve",
    response_model=ResolvedUrl,
    responses={
        200: {
            "description": "`mode=url`: a signed, expiring URL. `mode=bytes`: the blob itself.",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
        **PROBLEMS(400, 401, 403, 404, 413),
    },
)
def resolve_asset(body: ResolveRequest, who: PrincipalDep, service: ServiceDep) -> Response:
    """A blob ref (``sha256:<hex>[#row]``) as a signed URL or as bytes (scope ``read``).

    S3 stores answer with a presigned URL, the local store with an HMAC URL served by
    ``GET /v1/blobs/{digest}``. Keys restricted to personas resolve only their packs' refs.
    """
    asset = service.resolve_asset(who, body.ref, body.mode, body.ttl_s)
    if isinstance(asset, AssetBytes):
        return Response(asset.data, media_type="application/octet-stream", headers={"X-Blob-Ref": asset.ref})
    return JSONResponse(ResolvedUrl(ref=asset.ref, url=asset.url, expires_at=asset.expires_at).model_dump())


@router.get(
    "/v1/blobs/{digest}",
    response_class=Response,
    openapi_extra={"security": []},
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        **PROBLEMS(403, 404, 422),
    },
)
def signed_blob(
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    exp: Annotated[int, Query(description="expiry, unix time")],
    sig: Annotated[str, Query(description="HMAC-SHA256 signature")],
    service: ServiceDep,
) -> Response:
    """A blob behind a signed URL from ``/v1/assets/resolve``; the signature is the credential.

    403 ``bad_signature`` when the URL is tampered with or expired.
    """
    data = service.signed_blob(digest, exp, sig)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"ETag": f'"{digest}"', "Cache-Control": "private, max-age=300"},
    )
