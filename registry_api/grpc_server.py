"""The registry over gRPC: the calls of ``schemas/persona_registry.proto`` on the same
:class:`RegistryService` as HTTP, with the same API keys (metadata ``x-api-key`` or
``authorization: Bearer``) and the same error codes (trailing metadata ``error-code``; an
erasure's times in ``erasure-started-at`` / ``erased-at``). The port also serves
``grpc.health.v1`` (the stores' readiness) and server reflection, and speaks TLS when
``PERSONA_GRPC_TLS_CERT`` / ``PERSONA_GRPC_TLS_KEY`` are set."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from persona_core.erasure import ARCHIVES_NOTE, ErasureReport
from persona_core.errors import InvalidInputError, PersonaCoreError
from persona_core.store.aliases import UNSET, Alias, AliasMove
from persona_core.store.base import PersonaRecord, VersionRecord
from persona_core.store.events import Event
from persona_core.uploads import RawFile, parse_manifest, validate_upload
from registry_api.auth import Principal, key_from_headers
from registry_api.config import ApiSettings
from registry_api.errors import TooManyAuthFailuresError, grpc_status_for, problem_fields, public_detail
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_health import StoreHealth
from registry_api.service import LATEST, AssetBytes, RegistryService, is_version_number

log = logging.getLogger("registry_api.grpc")
T = TypeVar("T")
_GRPC_MAX_MESSAGE = 2**31 - 1
_DEFAULT_TTL_S = 3600
_DEFAULT_PAGE = 50  # as GET /v1/personas
_MAX_PAGE = 500
_SEVERITY = {"ERROR": pb.CHECK_SEVERITY_ERROR, "WARN": pb.CHECK_SEVERITY_WARN}
_METADATA_NAMES = {"started_at": "erasure-started-at", "erased_at": "erased-at"}


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn persona-core errors into gRPC statuses with the stable code in trailing metadata."""

    @functools.wraps(method)
    def wrapper(self: PersonaRegistryServicer, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except PersonaCoreError as exc:
            status = grpc_status_for(exc)
            if status == grpc.StatusCode.INTERNAL:
                log.error("%s in %s: %s", exc.code, method.__name__, exc)
            # The problem document's extra members (an erasure's times) as metadata.
            extra = tuple((_METADATA_NAMES[k], v or "") for k, v in problem_fields(exc).items())
            if isinstance(exc, TooManyAuthFailuresError):
                extra = (*extra, ("retry-after", str(exc.retry_after_s)))
            context.set_trailing_metadata((("error-code", exc.code), *extra))
            context.abort(status, f"{exc.code}: {public_detail(exc)}")
            raise  # unreachable: abort raises

    return wrapper


def _ts(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def persona_message(record: PersonaRecord) -> pb.Persona:
    return pb.Persona(
        persona_id=record.persona_id,
        metadata_json=json.dumps(record.metadata, sort_keys=True),
        created_at=_ts(record.created_at),
    )


def summary_message(record: PersonaRecord) -> pb.PersonaSummary:
    return pb.PersonaSummary(persona_id=record.persona_id, created_at=_ts(record.created_at))


def check_message(check: dict[str, Any]) -> pb.CheckResult:
    """A stored check result (``persona_core.pack.CheckResult`` as JSON) as its typed message."""
    metadata = struct_pb2.Struct()
    metadata.update(check.get("metadata") or {})
    return pb.CheckResult(
        name=str(check.get("name", "")),
        passed=bool(check.get("passed")),
        severity=_SEVERITY.get(str(check.get("severity")), pb.CHECK_SEVERITY_UNSPECIFIED),
        description=str(check.get("description") or ""),
        metadata=metadata,
    )


def version_message(record: VersionRecord) -> pb.PersonaVersion:
    return pb.PersonaVersion(
        persona_id=record.persona_id,
        version=record.version,
        status=record.status.value,
        reasons=list(record.reasons),
        checks=[check_message(c) for c in record.checks],
        checks_json=json.dumps(record.checks, sort_keys=True, default=str),  # for older clients
        inputs_json=json.dumps(record.inputs, sort_keys=True, default=str),
        created_at=_ts(record.created_at),
        updated_at=_ts(record.updated_at),
        published_at=_ts(record.published_at),
        content_hash=record.content_hash or "",
        retracted_at=_ts(record.retracted_at),
        retraction_reason=record.retraction_reason or "",
    )


def alias_message(alias: Alias) -> pb.Alias:
    return pb.Alias(persona_id=alias.persona_id, name=alias.name, version=alias.version,
                    updated_at=_ts(alias.updated_at), updated_by=alias.updated_by)


def move_message(move: AliasMove) -> pb.AliasMove:
    return pb.AliasMove(persona_id=move.persona_id, name=move.name, from_version=move.from_version,
                        to_version=move.to_version, actor=move.actor, reason=move.reason, at=_ts(move.at))


def event_message(event: Event) -> pb.Event:
    return pb.Event(
        id=event.id,
        type=event.type,
        at=_ts(event.at),
        persona_id=event.persona_id,
        version=event.version,
        data_json=json.dumps(event.data, sort_keys=True, default=str),
    )


def erasure_message(report: ErasureReport) -> pb.ErasureReport:
    return pb.ErasureReport(
        persona_id=report.persona_id,
        version=report.version,
        versions=list(report.versions),
        state=report.state,
        actor=report.actor,
        started_at=_ts(report.started_at),
        finished_at=_ts(report.finished_at),
        blobs_deleted=report.blobs_deleted,
        objects_deleted=report.objects_deleted,
        kept_shared=report.kept_shared,
        already_erased=report.already_erased,
        note=ARCHIVES_NOTE,
    )


class PersonaRegistryServicer(pb_grpc.PersonaRegistryServicer):
    def __init__(
        self, service: RegistryService, upload_pool: futures.ThreadPoolExecutor | None = None
    ) -> None:
        self.service = service
        if upload_pool is not None:
            # Its own threads: an upload receives and checks megabytes, and 8 of them on the
            # read threads held a GetPersonaPack for 17 s. grpc takes a method's pool from here.
            self.CreatePersonaVersion = _on_pool(self.CreatePersonaVersion, upload_pool)  # type: ignore[method-assign]

    def _who(self, context: grpc.ServicerContext) -> Principal:
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        return self.service.keys.verify(key_from_headers(headers.get), peer_host(context.peer()))

    @_guarded
    def CreatePersona(self, request: pb.CreatePersonaRequest, context: grpc.ServicerContext) -> pb.Persona:  # noqa: N802
        who = self._who(context)
        metadata = _json_object(request.metadata_json, "metadata_json")
        return persona_message(self.service.create_persona(who, request.persona_id, metadata))

    @_guarded
    def ListPersonas(  # noqa: N802
        self, request: pb.ListPersonasRequest, context: grpc.ServicerContext
    ) -> pb.ListPersonasResponse:
        limit = request.limit or _DEFAULT_PAGE
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidInputError(f"limit must be in 1..{_MAX_PAGE}, got {limit}")
        records, next_after = self.service.list_personas(self._who(context), limit, request.after or None)
        return pb.ListPersonasResponse(
            items=[summary_message(r) for r in records], next_after=next_after or ""
        )

    @_guarded
    def GetPersona(self, request: pb.GetPersonaRequest, context: grpc.ServicerContext) -> pb.Persona:  # noqa: N802
        return persona_message(self.service.get_persona(self._who(context), request.persona_id))

    @_guarded
    def CreatePersonaVersion(  # noqa: N802
        self, request: pb.CreatePersonaVersionRequest, context: grpc.ServicerContext
    ) -> pb.PersonaVersion:
        who = self._who(context)
        self.service.check_can_upload(who, request.persona_id)
        settings = self.service.settings
        files = [RawFile.of_bytes(f.name, f.data, f.content_type) for f in request.files]
        manifest = parse_manifest(request.manifest_json or None, settings.max_manifest_bytes)
        with self.service.uploads.hold():
            upload = validate_upload(files, manifest, settings)
            return version_message(self.service.submit_version(who, request.persona_id, upload))

    @_guarded
    def ListPersonaVersions(  # noqa: N802
        self, request: pb.ListPersonaVersionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPersonaVersionsResponse:
        who = self._who(context)
        records = self.service.list_versions(who, request.persona_id)
        return pb.ListPersonaVersionsResponse(
            persona_id=request.persona_id, versions=[version_message(r) for r in records]
        )

    @_guarded
    def GetPersonaPack(  # noqa: N802
        self, request: pb.GetPersonaPackRequest, context: grpc.ServicerContext
    ) -> pb.GetPersonaPackResponse:
        who = self._who(context)
        spec = request.version or LATEST
        pack = self.service.get_pack(who, request.persona_id, spec)
        latest = not is_version_number(spec)  # `latest` or an alias: it moves
        # As over HTTP; a numbered version also takes the bare content hash (documented in the proto).
        tag = request.if_none_match.strip()
        fresh = pack.is_current(tag, latest) or (not latest and tag == pack.content_hash)
        return pb.GetPersonaPackResponse(
            persona_id=pack.persona_id,
            version=pack.version,
            content_hash=pack.content_hash,
            etag=pack.latest_etag if latest else pack.etag,
            pack_json=b"" if fresh else pack.body,
            not_modified=fresh,
            retracted_at=_ts(pack.retracted_at),
            retraction_reason=pack.retraction_reason or "",
        )

    @_guarded
    def ResolveAsset(  # noqa: N802
        self, request: pb.ResolveAssetRequest, context: grpc.ServicerContext
    ) -> pb.ResolveAssetResponse:
        who = self._who(context)
        mode = "bytes" if request.mode == pb.RESOLVE_MODE_BYTES else "url"
        ttl_s = request.ttl_s or _DEFAULT_TTL_S  # 0 = unset in proto3; the service checks the range
        asset = self.service.resolve_asset(who, request.ref, mode, ttl_s)
        if isinstance(asset, AssetBytes):
            return pb.ResolveAssetResponse(ref=asset.ref, data=asset.data)
        return pb.ResolveAssetResponse(ref=asset.ref, url=asset.url, expires_at=asset.expires_at)


    @_guarded
    def WatchEvents(  # noqa: N802
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Event]:
        who = self._who(context)
        who.require("read")  # here, so a refusal is a status before the stream starts
        if request.after < 0:
            raise InvalidInputError("after must be >= 0")
        events = self.service.events.watch(who, request.after, context.is_active)
        return (event_message(event) for event in events)

    @_guarded
    def ErasePersona(  # noqa: N802
        self, request: pb.ErasePersonaRequest, context: grpc.ServicerContext
    ) -> pb.ErasureReport:
        who = self._who(context)
        version = request.version if request.HasField("version") else None
        return erasure_message(self.service.erase(who, request.persona_id, version, request.reason))

    @_guarded
    def DiffPersonaVersions(  # noqa: N802
        self, request: pb.DiffPersonaVersionsRequest, context: grpc.ServicerContext
    ) -> pb.PackDiff:
        who = self._who(context)
        diff = self.service.diff(who, request.persona_id, request.from_version or LATEST,
                                 request.to_version or LATEST)
        return pb.PackDiff(
            persona_id=diff.persona_id,
            from_version=diff.from_version,
            to_version=diff.to_version,
            same_content=diff.same_content,
            centroid_cosine=diff.centroid_cosine,
            diff_json=diff.model_dump_json(),
        )


    @_guarded
    def ListAliases(  # noqa: N802
        self, request: pb.ListAliasesRequest, context: grpc.ServicerContext
    ) -> pb.ListAliasesResponse:
        aliases = self.service.list_aliases(self._who(context), request.persona_id)
        items = [alias_message(a) for a in aliases]
        return pb.ListAliasesResponse(persona_id=request.persona_id, aliases=items)

    @_guarded
    def GetAlias(self, request: pb.GetAliasRequest, context: grpc.ServicerContext) -> pb.Alias:  # noqa: N802
        return alias_message(self.service.get_alias(self._who(context), request.persona_id, request.name))

    @_guarded
    def SetAlias(self, request: pb.SetAliasRequest, context: grpc.ServicerContext) -> pb.AliasMove:  # noqa: N802
        expected = request.expected_version if request.HasField("expected_version") else UNSET
        move = self.service.move_alias(self._who(context), request.persona_id, request.name, request.version,
                                       expected=expected, reason=request.reason)
        return move_message(move)

    @_guarded
    def DeleteAlias(self, request: pb.DeleteAliasRequest, context: grpc.ServicerContext) -> pb.AliasMove:  # noqa: N802
        move = self.service.move_alias(self._who(context), request.persona_id, request.name, None,
                                       expected=request.expected_version, reason=request.reason)
        return move_message(move)

    @_guarded
    def RollbackAlias(  # noqa: N802
        self, request: pb.RollbackAliasRequest, context: grpc.ServicerContext
    ) -> pb.AliasMove:
        who = self._who(context)
        move = self.service.rollback_alias(who, request.persona_id, request.name, request.reason)
        return move_message(move)

    @_guarded
    def AliasHistory(  # noqa: N802
        self, request: pb.AliasHistoryRequest, context: grpc.ServicerContext
    ) -> pb.AliasHistoryResponse:
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidInputError(f"limit must be in 1..1000, got {limit}")
        moves = self.service.alias_history(self._who(context), request.persona_id, request.name, limit)
        return pb.AliasHistoryResponse(persona_id=request.persona_id, moves=[move_message(m) for m in moves])

    @_guarded
    def RetractVersion(  # noqa: N802
        self, request: pb.RetractVersionRequest, context: grpc.ServicerContext
    ) -> pb.PersonaVersion:
        who = self._who(context)
        return version_message(self.service.retract(who, request.persona_id, request.version, request.reason))


def _on_pool(method: Callable[..., T], pool: futures.ThreadPoolExecutor) -> Callable[..., T]:
    @functools.wraps(method)
    def on_pool(request: Any, context: grpc.ServicerContext) -> T:
        return method(request, context)

    on_pool.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return on_pool


def peer_host(peer: str) -> str:
    """The client's IP from ``context.peer()`` (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0].strip("[]")
    return peer


def _json_object(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInputError(f"{field} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{field} must be a JSON object")
    return value


def start_grpc_server(
    service: RegistryService,
    port: int = 0,
    host: str = "127.0.0.1",
    max_workers: int | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    """Start the gRPC server on ``host:port`` (0 = a free port); returns it and the bound port.
    ``interceptors`` wrap every call (``serve``: request ids, access lines and metrics).

    Besides the registry it serves ``grpc.health.v1.Health`` and server reflection; TLS when
    the settings name a certificate and key."""
    settings = service.settings
    limit = min(settings.max_request_bytes, _GRPC_MAX_MESSAGE)
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers or service.settings.grpc_read_workers, thread_name_prefix="registry-grpc"
        ),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        interceptors=interceptors,
    )
    uploads = futures.ThreadPoolExecutor(
        max_workers=service.settings.grpc_upload_workers, thread_name_prefix="registry-grpc-upload"
    )
    pb_grpc.add_PersonaRegistryServicer_to_server(PersonaRegistryServicer(service, uploads), server)
    registry_name = pb.DESCRIPTOR.services_by_name["PersonaRegistry"].full_name
    readiness = StoreHealth(service, (registry_name,), settings.grpc_health_interval_s)
    health_pb2_grpc.add_HealthServicer_to_server(readiness.servicer, server)
    reflection.enable_server_reflection((registry_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    credentials = _tls_credentials(settings)
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    server.start()
    readiness.watch(server)
    return server, bound


def _tls_credentials(settings: ApiSettings) -> grpc.ServerCredentials | None:
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return None
    return grpc.ssl_server_credentials(
        [(settings.grpc_tls_key.read_bytes(), settings.grpc_tls_cert.read_bytes())]
    )
