"""Assets: resolve a blob ref to a signed URL or its bytes; serve HMAC-signed local blobs."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from persona_core.errors import SignatureError
from persona_core.uploads import SNIFFED_MEDIA_TYPES, sniff
from registry_api.deps import ServiceDep, authenticate
from registry_api.routes.common import PROBLEMS
from registry_api.schemas import AssetBytesRequest, LegacyResolveRequest, ResolvedUrl, ResolveRequest
from registry_api.service import AssetBytes, RegistryService, SignedUrl

router = APIRouter(tags=["assets"])

OCTET_STREAM = "application/octet-stream"
_Body = TypeVar("_Body", bound=BaseModel)
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
# A blob is served as what its bytes are (the upload gate's magic numbers), so a browser shows
# a JPEG behind a signed URL instead of downloading it; anything else is octet-stream.
_BLOB_CONTENT = {
    t: {"schema": {"type": "string", "format": "binary"}} for t in (*SNIFFED_MEDIA_TYPES, OCTET_STREAM)
}


def blob_media_type(data: bytes) -> str:
    sniffed = sniff(data)
    return sniffed[1] if sniffed else OCTET_STREAM


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a body the route parses itself; the model's schema is added to the
    components by :mod:`registry_api.openapi_spec`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


_ASSET_PROBLEMS = {
    **PROBLEMS(400, 401, 403, 404, 410, 413),
    422: {**PROBLEMS(422)[422], "description": "Validation Error"},
}
_BLOB_REF_HEADER = {"description": "The ref that was asked for.", "schema": {"type": "string"}}


@router.post(
    "/v1/assets/resolve",
    response_model=ResolvedUrl,
    openapi_extra=_json_body(ResolveRequest),
    responses={200: {"description": "A signed, expiring URL that needs no API key."}, **_ASSET_PROBLEMS},
)
async def resolve_asset(request: Request) -> Response:
    """A blob ref (``sha256:<hex>[#row]``) as a signed, expiring URL (scope ``read``).

    S3 stores answer with a presigned URL, the local store with an HMAC URL served by
    ``GET /v1/blobs/{digest}``. Keys restricted to personas resolve only their packs' refs.
    410 while only versions being erased hold the blob; 404 ``blob_not_found`` once it is gone.
    The bytes themselves come from ``POST /v1/assets/bytes`` (``mode=bytes`` here still answers
    with them, for clients written before it, but is no longer part of this contract).
    """
    # A hot route, like GET pack: no injected dependencies or body parameter (FastAPI's
    # resolver cost more than signing). The body gets the same 422 a body model would give.
    service: RegistryService = request.app.state.service
    who = await authenticate(request)
    body = _parse_body(LegacyResolveRequest, await request.body())
    # A blob seen before signs in the event loop; anything that may touch a store (exists,
    # bytes, a restricted key's pack scan) goes to a worker thread.
    asset: SignedUrl | AssetBytes | None = service.cached_resolve(who, body.ref, body.mode, body.ttl_s)
    if asset is None:
        asset = await run_in_threadpool(service.resolve_asset, who, body.ref, body.mode, body.ttl_s)
    if isinstance(asset, AssetBytes):
        return Response(asset.data, media_type=blob_media_type(asset.data), headers={"X-Blob-Ref": asset.ref})
    doc = {"ref": asset.ref, "url": asset.url, "expires_at": asset.expires_at}
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


@router.post(
    "/v1/assets/bytes",
    response_class=Response,
    openapi_extra=_json_body(AssetBytesRequest),
    responses={
        200: {
            "description": "The blob's bytes (a matrix row's for `sha256:<hex>#<row>`).",
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"X-Blob-Ref": {**_BLOB_REF_HEADER, "required": True}},
        },
        **_ASSET_PROBLEMS,
    },
)
async def get_asset_bytes(request: Request) -> Response:
    """A blob ref's bytes, always ``application/octet-stream`` (scope ``read``).

    Keys restricted to personas read only their packs' refs. 413 ``request_too_large`` past
    ``PERSONA_RESOLVE_BYTES_MAX`` (16 MiB; resolve a URL instead); 410 while only versions being
    erased hold the blob; 404 ``blob_not_found`` once it is gone.
    """
    service: RegistryService = request.app.state.service
    who = await authenticate(request)
    body = _parse_body(AssetBytesRequest, await request.body())
    asset = await run_in_threadpool(service.resolve_asset, who, body.ref, "bytes", 1)
    if not isinstance(asset, AssetBytes):  # pragma: no cover - mode "bytes" answers with bytes
        raise TypeError(f"expected bytes for {body.ref}, got {type(asset).__name__}")
    return Response(asset.data, media_type=OCTET_STREAM, headers={"X-Blob-Ref": asset.ref})


def _parse_body(model: type[_Body], raw: bytes) -> _Body:
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


@router.get(
    "/v1/blobs/{digest}",
    response_class=Response,
    openapi_extra={"security": []},
    responses={
        200: {
            "description": "The blob, typed by its bytes (image/jpeg, image/png, ...; "
            "application/octet-stream otherwise).",
            "content": _BLOB_CONTENT,
        },
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
