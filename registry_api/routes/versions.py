"""Persona versions: upload (starts a build), list, status, retract, erase, and the published pack."""

from __future__ import annotations

from typing import BinaryIO, cast

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from persona_core.pack import PERSONA_ID_PATTERN, PersonaPack
from persona_core.upload_sources import StreamSource
from persona_core.uploads import FIELD_KINDS, MANIFEST_FIELD, RawFile, parse_manifest, validate_upload
from registry_api.config import ApiSettings
from registry_api.deps import PrincipalDep, ServiceDep, authenticate
from registry_api.errors import RequestTooLargeError, TooManyFilesError, UploadError
from registry_api.guards import capped_receive
from registry_api.routes.common import (
    PERSONA_ID_DOC,
    PROBLEMS,
    VERSION_DOC,
    PersonaIdPath,
    VersionPath,
    check_persona_id_path,
)
from registry_api.schemas import ErasureOut, ErasureRequest, RetractRequest, VersionList, VersionOut
from registry_api.service import VERSION_SPEC_PATTERN, RegistryService, is_version_number

router = APIRouter(prefix="/v1/personas/{persona_id}/versions", tags=["versions"])

IMMUTABLE = "public, max-age=31536000, immutable"
# `latest` moves: caches must revalidate (the ETag makes that a cheap 304).
REVALIDATE = "no-cache"
_IMMUTABLE_HEADER = (b"cache-control", IMMUTABLE.encode())
_REVALIDATE_HEADER = (b"cache-control", REVALIDATE.encode())
_PACK_PARAMS = {
    "parameters": [
        {
            "in": "path",
            "name": "persona_id",
            "required": True,
            "description": PERSONA_ID_DOC,
            "schema": {"title": "Persona Id", "type": "string", "pattern": PERSONA_ID_PATTERN},
        },
        {
            "in": "path",
            "name": "version",
            "required": True,
            "description": VERSION_DOC,
            "schema": {"title": "Version", "type": "string", "pattern": VERSION_SPEC_PATTERN},
        },
        {
            "in": "header",
            "name": "If-None-Match",
            "required": False,
            "description": "ETags of copies the client holds: 304 when one is current.",
            "schema": {"title": "If-None-Match", "type": "string"},
        },
    ]
}
_STRING = {"type": "string"}
_PACK_HEADERS = {
    "ETag": {
        "description": 'Validator for If-None-Match: `"<content_hash>"`, or `"<content_hash>.v<N>"` '
        "for `latest` and aliases.",
        "required": True,
        "schema": _STRING,
    },
    "Cache-Control": {
        "description": f"`{IMMUTABLE}` for a version number; `{REVALIDATE}` for `latest` "
        "and aliases, which move.",
        "required": True,
        "schema": _STRING,
    },
    "X-Persona-Version": {
        "description": "The version served.",
        "required": True,
        "schema": {"type": "integer"},
    },
    "Content-Location": {
        "description": "For `latest` and aliases: the pack's URL by version number.",
        "schema": _STRING,
    },
    "Persona-Retracted": {
        "description": 'Only on a retracted version: `<RFC 3339 time>; reason="<JSON string>"`.',
        "schema": _STRING,
    },
}

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Images, video clips and voice clips; "
                            "the kind is sniffed from the bytes.",
                        },
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "videos": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "voices": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        MANIFEST_FIELD: {
                            "type": "string",
                            "description": "Optional JSON: "
                            '{"files": {"<name>": {"camera_mode": "A_SELFIE"}}, '
                            '"behavior": BehaviorPolicy, "voice": VoiceProfile, '
                            '"refresh": {"identity_drift_warn": 0.7, ...}}',
                        },
                    },
                }
            }
        },
    }
}


# Declared first: routes match in order and this is the hot one.
@router.get(
    "/{version}/pack",
    response_class=Response,
    openapi_extra=_PACK_PARAMS,
    responses={
        200: {
            "model": PersonaPack,
            "description": "The PersonaPack JSON (schemas/persona_pack.schema.json), exactly as stored.",
            "headers": _PACK_HEADERS,
        },
        304: {"description": "The client's copy (If-None-Match) is current.", "headers": _PACK_HEADERS},
        **PROBLEMS(400, 401, 403, 404, 410),
        422: {**PROBLEMS(422)[422], "description": "A persona id that breaks its pattern (`invalid_name`)."},
    },
)
async def get_pack(request: Request) -> Response:
    """The published pack (scope ``read``): ETag = content hash, immutable once published.

    404 ``pack_not_published`` until the version is published. ``latest`` answers with the
    newest published pack, ``Content-Location`` naming its version, and the ETag
    ``"<content_hash>.v<N>"``, so a client's copy of another version never revalidates as
    current even when the content is the same. An alias (``live``) answers like ``latest``
    with the version it points at. A retracted version is still served by its number, with
    ``Persona-Retracted: <time>; reason="..."``; ``latest`` skips it. 410 ``persona_erased`` /
    ``version_erased`` (with the erasure's times) once an erasure of it has started: drop every copy; after a
    version's erasure ``latest`` is the newest remaining published version.
    """
    # The hot route: no injected dependencies or parameter models (FastAPI's resolver costs
    # more than the rest of this function); its parameters are documented in _PACK_PARAMS.
    persona_id: str = request.path_params["persona_id"]
    version: str = request.path_params["version"]
    service: RegistryService = request.app.state.service
    who = await authenticate(request)
    pack = service.cached_pack(who, persona_id, version)
    if pack is None:
        check_persona_id_path(persona_id)  # a cached pack's id is valid: checked on a miss only
        pack = await run_in_threadpool(service.get_pack, who, persona_id, version)
    moving = not is_version_number(version)  # `latest` or an alias: it moves
    if pack.is_current(request.headers.get("if-none-match"), moving):
        response = Response(status_code=304)
    else:
        response = Response(pack.body, media_type="application/json")
    if moving:
        response.raw_headers.extend(pack.latest_raw_headers)
        where = f"/v1/personas/{persona_id}/versions/{pack.version}/pack"
        response.raw_headers += [_REVALIDATE_HEADER, (b"content-location", where.encode())]
    else:
        response.raw_headers.extend(pack.raw_headers)
        response.raw_headers.append(_IMMUTABLE_HEADER)
    return response


@router.post(
    "",
    status_code=202,
    openapi_extra=_UPLOAD_BODY,
    responses={
        202: {
            "headers": {
                "Location": {
                    "description": "The version's status URL (`status_url`).",
                    "required": True,
                    "schema": _STRING,
                }
            }
        },
        **PROBLEMS(400, 401, 403, 404, 410, 413, 415, 422, 503),
    },
)
async def create_version(
    persona_id: PersonaIdPath, request: Request, response: Response, who: PrincipalDep, service: ServiceDep
) -> VersionOut:
    """Upload inputs for a new version (scope ``build``): 202 with the pending version.

    The build is triggered through the upload manifest that the pipeline's sensor watches; it
    never runs inside this request. Every file is checked before anything is stored; what a
    file is comes from its bytes. Files in no accepted format are skipped and listed with their
    reasons in ``inputs.skipped`` (415 ``unsupported_media_type`` when no file is left);
    ``inputs.notes`` says which names or declared types the bytes contradicted and which
    duplicate names were relabelled. 503 ``uploads_busy`` (with ``Retry-After``) while this
    worker takes ``PERSONA_MAX_CONCURRENT_UPLOADS`` uploads already.
    """
    await run_in_threadpool(service.check_can_upload, who, persona_id)
    settings = service.settings
    # A slot before a byte of the body is read: past the worker's bound, 503 uploads_busy.
    with service.uploads.hold():
        form = await _parse_form(request, settings)
        try:
            files, manifest_text = await _form_files(form, settings)
            manifest = parse_manifest(manifest_text, settings.max_manifest_bytes)
            # The gate reads the spooled parts one at a time, in a worker thread.
            upload = await run_in_threadpool(validate_upload, files, manifest, settings)
            record = await run_in_threadpool(service.submit_version, who, persona_id, upload)
        finally:
            await form.close()
    out = VersionOut.of(record)
    response.headers["Location"] = out.status_url
    return out


@router.get("", responses=PROBLEMS(401, 403, 404, 410))
def list_versions(persona_id: PersonaIdPath, who: PrincipalDep, service: ServiceDep) -> VersionList:
    """Every version with status, reasons, check results and times (scope ``read``). An erased
    version stays as a tombstone (status ``erasing`` / ``erased``, no inputs or checks)."""
    records = service.list_versions(who, persona_id)
    return VersionList(persona_id=persona_id, items=[VersionOut.of(r) for r in records])


@router.get("/{version}", responses=PROBLEMS(400, 401, 403, 404, 410))
def get_version(
    persona_id: PersonaIdPath, version: VersionPath, who: PrincipalDep, service: ServiceDep
) -> VersionOut:
    """One version's status; ``latest`` is the newest published one (scope ``read``). 410
    ``version_erased`` (or ``persona_erased``) once its erasure has started."""
    return VersionOut.of(service.get_version(who, persona_id, version))


@router.post("/{version}/retract", responses=PROBLEMS(400, 401, 403, 404, 409, 410))
def retract_version(
    persona_id: PersonaIdPath,
    version: VersionPath,
    body: RetractRequest,
    who: PrincipalDep,
    service: ServiceDep,
) -> VersionOut:
    """Withdraw a published version (scope ``promote``; a ``reason`` is required), as PyPI yanks
    a release: ``latest`` skips it, its number still serves the pack byte for byte with a
    ``Persona-Retracted`` header, and the version record shows when and why. 409
    ``alias_in_use`` (naming the aliases) while an alias points at it; 409
    ``invalid_status_transition`` unless it is published."""
    return VersionOut.of(service.retract(who, persona_id, version, body.reason))


@router.delete("/{version}", responses=PROBLEMS(400, 401, 403, 404, 422))
def erase_version(
    persona_id: PersonaIdPath,
    version: VersionPath,
    body: ErasureRequest,
    who: PrincipalDep,
    service: ServiceDep,
) -> ErasureOut:
    """Erase one numbered version (scope ``admin``; a ``reason`` is required): what it alone
    holds is deleted, blobs the persona's other versions (or other personas) hold stay. Reads
    of it answer 410 ``version_erased``; ``latest`` moves to the newest remaining published
    version. A second call resumes or reports the finished erasure (``already_erased``)."""
    report = service.erase(who, persona_id, version, body.reason)
    return ErasureOut.model_validate(report.as_dict())


async def _parse_form(request: Request, settings: ApiSettings) -> FormData:
    """Parse the form with hard limits: body size, part count, manifest size. File parts are
    spooled (to disk past 1 MiB); the caller closes the form once the gate is done with them."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise UploadError("send the files as multipart/form-data")
    declared_length = request.headers.get("content-length")
    if declared_length and declared_length.isdigit() and int(declared_length) > settings.max_request_bytes:
        raise RequestTooLargeError(
            f"request body of {declared_length} bytes > limit {settings.max_request_bytes}"
        )
    # A scope without "app" makes Starlette raise MultiPartException instead of a bare 400,
    # so the limits below answer with the registry's own codes.
    scope = {k: v for k, v in request.scope.items() if k != "app"}
    limited = Request(scope, capped_receive(request.receive, settings.max_request_bytes))
    try:
        # Files the gate skips (no accepted format) do not count towards max_upload_files, which
        # the gate checks; the parser's own cap is only a bound on parts (the body cap holds too).
        return await limited.form(
            max_files=2 * settings.max_upload_files,
            max_fields=settings.max_upload_fields,
            max_part_size=settings.max_manifest_bytes,
        )
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooManyFilesError(f"more than {settings.max_upload_files} files in one upload") from None
        raise UploadError(f"malformed multipart body: {exc.message}") from None


async def _form_files(form: FormData, settings: ApiSettings) -> tuple[list[RawFile], str | None]:
    files: list[RawFile] = []
    manifest: str | None = None
    for field, value in form.multi_items():
        if field == MANIFEST_FIELD:
            # Sent as a plain field or as a file part; form parsing already capped its size.
            raw = await value.read() if isinstance(value, UploadFile) else value
            manifest = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        elif isinstance(value, UploadFile):
            files.append(_raw_file(field, value, settings))
        else:
            raise UploadError(f"unexpected form field {field!r}")
    return files, manifest


def _raw_file(field: str, upload: UploadFile, settings: ApiSettings) -> RawFile:
    if field not in FIELD_KINDS:
        raise UploadError(f"unexpected file field {field!r}: use files, images, videos or voices")
    # The part stays where it was spooled; the gate reads its size and first bytes, then the
    # whole of it only if it is a file it keeps.
    source = StreamSource(cast(BinaryIO, upload.file), upload.size)
    declared = upload.content_type or ""
    return RawFile(name=upload.filename or "", source=source, declared_type=declared, field=field)
