from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_SEVERITY_UNSPECIFIED: _ClassVar[CheckSeverity]
    CHECK_SEVERITY_ERROR: _ClassVar[CheckSeverity]
    CHECK_SEVERITY_WARN: _ClassVar[CheckSeverity]

class ResolveMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLVE_MODE_URL: _ClassVar[ResolveMode]
    RESOLVE_MODE_BYTES: _ClassVar[ResolveMode]
CHECK_SEVERITY_UNSPECIFIED: CheckSeverity
CHECK_SEVERITY_ERROR: CheckSeverity
CHECK_SEVERITY_WARN: CheckSeverity
RESOLVE_MODE_URL: ResolveMode
RESOLVE_MODE_BYTES: ResolveMode

class CreatePersonaRequest(_message.Message):
    __slots__ = ("persona_id", "metadata_json")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    metadata_json: str
    def __init__(self, persona_id: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class Persona(_message.Message):
    __slots__ = ("persona_id", "metadata_json", "created_at")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    metadata_json: str
    created_at: str
    def __init__(self, persona_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListPersonasRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class PersonaSummary(_message.Message):
    __slots__ = ("persona_id", "created_at")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    created_at: str
    def __init__(self, persona_id: _Optional[str] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListPersonasResponse(_message.Message):
    __slots__ = ("items", "next_after")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PersonaSummary]
    next_after: str
    def __init__(self, items: _Optional[_Iterable[_Union[PersonaSummary, _Mapping]]] = ..., next_after: _Optional[str] = ...) -> None: ...

class GetPersonaRequest(_message.Message):
    __slots__ = ("persona_id",)
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    def __init__(self, persona_id: _Optional[str] = ...) -> None: ...

class UploadFile(_message.Message):
    __slots__ = ("name", "content_type", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_type: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., content_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class CreatePersonaVersionRequest(_message.Message):
    __slots__ = ("persona_id", "files", "manifest_json")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    files: _containers.RepeatedCompositeFieldContainer[UploadFile]
    manifest_json: str
    def __init__(self, persona_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[UploadFile, _Mapping]]] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "passed", "severity", "description", "metadata")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    severity: CheckSeverity
    description: str
    metadata: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., severity: _Optional[_Union[CheckSeverity, str]] = ..., description: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PersonaVersion(_message.Message):
    __slots__ = ("persona_id", "version", "status", "reasons", "checks_json", "inputs_json", "created_at", "updated_at", "published_at", "content_hash", "retracted_at", "retraction_reason", "checks")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_JSON_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    RETRACTED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRACTION_REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: int
    status: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    checks_json: str
    inputs_json: str
    created_at: str
    updated_at: str
    published_at: str
    content_hash: str
    retracted_at: str
    retraction_reason: str
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., checks_json: _Optional[str] = ..., inputs_json: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., published_at: _Optional[str] = ..., content_hash: _Optional[str] = ..., retracted_at: _Optional[str] = ..., retraction_reason: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ...) -> None: ...

class ListPersonaVersionsRequest(_message.Message):
    __slots__ = ("persona_id",)
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    def __init__(self, persona_id: _Optional[str] = ...) -> None: ...

class ListPersonaVersionsResponse(_message.Message):
    __slots__ = ("persona_id", "versions")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    versions: _containers.RepeatedCompositeFieldContainer[PersonaVersion]
    def __init__(self, persona_id: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[PersonaVersion, _Mapping]]] = ...) -> None: ...

class GetPersonaPackRequest(_message.Message):
    __slots__ = ("persona_id", "version", "if_none_match")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IF_NONE_MATCH_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: str
    if_none_match: str
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[str] = ..., if_none_match: _Optional[str] = ...) -> None: ...

class GetPersonaPackResponse(_message.Message):
    __slots__ = ("persona_id", "version", "content_hash", "etag", "pack_json", "not_modified", "retracted_at", "retraction_reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    PACK_JSON_FIELD_NUMBER: _ClassVar[int]
    NOT_MODIFIED_FIELD_NUMBER: _ClassVar[int]
    RETRACTED_AT_FIELD_NUMBER: _ClassVar[int]
    RETRACTION_REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: int
    content_hash: str
    etag: str
    pack_json: bytes
    not_modified: bool
    retracted_at: str
    retraction_reason: str
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[int] = ..., content_hash: _Optional[str] = ..., etag: _Optional[str] = ..., pack_json: _Optional[bytes] = ..., not_modified: _Optional[bool] = ..., retracted_at: _Optional[str] = ..., retraction_reason: _Optional[str] = ...) -> None: ...

class ResolveAssetRequest(_message.Message):
    __slots__ = ("ref", "mode", "ttl_s")
    REF_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    ref: str
    mode: ResolveMode
    ttl_s: int
    def __init__(self, ref: _Optional[str] = ..., mode: _Optional[_Union[ResolveMode, str]] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class ResolveAssetResponse(_message.Message):
    __slots__ = ("ref", "url", "expires_at", "data")
    REF_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ref: str
    url: str
    expires_at: int
    data: bytes
    def __init__(self, ref: _Optional[str] = ..., url: _Optional[str] = ..., expires_at: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after",)
    AFTER_FIELD_NUMBER: _ClassVar[int]
    after: int
    def __init__(self, after: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "type", "at", "persona_id", "version", "data_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: str
    at: str
    persona_id: str
    version: int
    data_json: str
    def __init__(self, id: _Optional[int] = ..., type: _Optional[str] = ..., at: _Optional[str] = ..., persona_id: _Optional[str] = ..., version: _Optional[int] = ..., data_json: _Optional[str] = ...) -> None: ...

class ErasePersonaRequest(_message.Message):
    __slots__ = ("persona_id", "version", "reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: int
    reason: str
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ErasureReport(_message.Message):
    __slots__ = ("persona_id", "version", "versions", "state", "actor", "started_at", "finished_at", "blobs_deleted", "objects_deleted", "kept_shared", "already_erased", "note")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_DELETED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_DELETED_FIELD_NUMBER: _ClassVar[int]
    KEPT_SHARED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_ERASED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    state: str
    actor: str
    started_at: str
    finished_at: str
    blobs_deleted: int
    objects_deleted: int
    kept_shared: int
    already_erased: bool
    note: str
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., state: _Optional[str] = ..., actor: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., blobs_deleted: _Optional[int] = ..., objects_deleted: _Optional[int] = ..., kept_shared: _Optional[int] = ..., already_erased: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class DiffPersonaVersionsRequest(_message.Message):
    __slots__ = ("persona_id", "from_version", "to_version")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    from_version: str
    to_version: str
    def __init__(self, persona_id: _Optional[str] = ..., from_version: _Optional[str] = ..., to_version: _Optional[str] = ...) -> None: ...

class PackDiff(_message.Message):
    __slots__ = ("persona_id", "from_version", "to_version", "same_content", "centroid_cosine", "diff_json")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAME_CONTENT_FIELD_NUMBER: _ClassVar[int]
    CENTROID_COSINE_FIELD_NUMBER: _ClassVar[int]
    DIFF_JSON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    from_version: int
    to_version: int
    same_content: bool
    centroid_cosine: float
    diff_json: str
    def __init__(self, persona_id: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., same_content: _Optional[bool] = ..., centroid_cosine: _Optional[float] = ..., diff_json: _Optional[str] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("persona_id", "name", "version", "updated_at", "updated_by")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    version: int
    updated_at: str
    updated_by: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., updated_at: _Optional[str] = ..., updated_by: _Optional[str] = ...) -> None: ...

class AliasMove(_message.Message):
    __slots__ = ("persona_id", "name", "from_version", "to_version", "actor", "reason", "at")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    from_version: int
    to_version: int
    actor: str
    reason: str
    at: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ("persona_id",)
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    def __init__(self, persona_id: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("persona_id", "aliases")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    def __init__(self, persona_id: _Optional[str] = ..., aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ...) -> None: ...

class GetAliasRequest(_message.Message):
    __slots__ = ("persona_id", "name")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("persona_id", "name", "version", "expected_version", "reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    version: str
    expected_version: int
    reason: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("persona_id", "name", "expected_version", "reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    expected_version: int
    reason: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("persona_id", "name", "reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    reason: str
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AliasHistoryRequest(_message.Message):
    __slots__ = ("persona_id", "name", "limit")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    name: str
    limit: int
    def __init__(self, persona_id: _Optional[str] = ..., name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AliasHistoryResponse(_message.Message):
    __slots__ = ("persona_id", "moves")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    moves: _containers.RepeatedCompositeFieldContainer[AliasMove]
    def __init__(self, persona_id: _Optional[str] = ..., moves: _Optional[_Iterable[_Union[AliasMove, _Mapping]]] = ...) -> None: ...

class RetractVersionRequest(_message.Message):
    __slots__ = ("persona_id", "version", "reason")
    PERSONA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    persona_id: str
    version: int
    reason: str
    def __init__(self, persona_id: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
