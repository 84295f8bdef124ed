"""Typed errors raised by persona-core. Each carries a stable ``code`` for the API edge."""

from __future__ import annotations

from datetime import datetime


class PersonaCoreError(Exception):
    """Base class; ``code`` is stable and safe to show to API clients."""

    code = "persona_core_error"


class InvalidInputError(PersonaCoreError, ValueError):
    code = "invalid_input"


class InvalidNameError(InvalidInputError):
    code = "invalid_name"


class PackValidationError(PersonaCoreError, ValueError):
    """A pack document does not match schemas/persona_pack.schema.json."""

    code = "invalid_pack"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFoundError(PersonaCoreError, LookupError):
    code = "not_found"


class PersonaNotFoundError(NotFoundError):
    code = "persona_not_found"


class VersionNotFoundError(NotFoundError):
    code = "version_not_found"


class PackNotPublishedError(VersionNotFoundError):
    """The version exists but has no pack yet (pending, building, blocked or failed)."""

    code = "pack_not_published"


class AliasNotFoundError(NotFoundError):
    code = "alias_not_found"


class BlobNotFoundError(NotFoundError):
    code = "blob_not_found"


class AlreadyExistsError(PersonaCoreError):
    code = "already_exists"


class ErasedError(PersonaCoreError):
    """What was asked for has been erased (or its erasure is under way): 410 Gone. Carries when
    the erasure started and, once it is done, when it ended."""

    code = "erased"

    def __init__(self, message: str, *, started_at: datetime, erased_at: datetime | None = None) -> None:
        super().__init__(message)
        self.started_at, self.erased_at = started_at, erased_at


class PersonaErasedError(ErasedError):
    code = "persona_erased"


class VersionErasedError(ErasedError):
    code = "version_erased"


class ImmutableVersionError(PersonaCoreError):
    """A published version can never be rewritten."""

    code = "version_immutable"


class InvalidTransitionError(PersonaCoreError):
    code = "invalid_status_transition"


class AliasConflictError(PersonaCoreError):
    """An alias moved (or was created) since the caller read it: re-read and retry (409/412)."""

    code = "alias_conflict"


class AliasInUseError(InvalidTransitionError):
    """A version an alias points at cannot be retracted: move the alias first."""

    code = "alias_in_use"


class BuildInProgressError(InvalidTransitionError):
    """The version is ``building`` under another live build's lease."""

    code = "build_in_progress"


class IntegrityError(PersonaCoreError):
    """Bytes do not hash to the reference that names them (tampering or corruption)."""

    code = "integrity_error"


class CacheDamagedError(IntegrityError):
    """A renderer's cached pack file is damaged (truncated, emptied, altered) and no good copy
    could be fetched to replace it: the source is unreachable or absent."""

    code = "cache_damaged"


class PackConflictError(IntegrityError):
    """A source answered a version already held with a different content hash. Published packs
    are immutable, so this is an attack or a bug, never an update: the held copy is kept."""

    code = "pack_conflict"


class SignatureError(PersonaCoreError):
    """A signed URL is tampered with or expired."""

    code = "bad_signature"


class StoreUnavailableError(PersonaCoreError):
    code = "store_unavailable"


class SchemaOutdatedError(StoreUnavailableError):
    """The database's schema is not the revision this code needs; the message names the command
    that fixes it (``persona-core migrate``)."""

    code = "schema_outdated"


class InvalidManifestError(InvalidInputError):
    """An upload manifest object is not the JSON document the pipeline expects."""

    code = "invalid_manifest"


class InvalidVersionInputsError(InvalidInputError):
    """A version's stored inputs are neither uploaded files nor an imported pack's origin."""

    code = "invalid_version_inputs"


class NotRebuildableError(InvalidInputError):
    """A version holds no uploaded files to build from (an imported pack)."""

    code = "not_rebuildable"


class UploadError(InvalidInputError):
    """An uploaded file or upload request refused at the door (HTTP, gRPC and the CLI alike)."""

    code = "invalid_upload"


class NoFilesError(UploadError):
    code = "no_files"


class FileTooLargeError(UploadError):
    code = "file_too_large"


class RequestTooLargeError(UploadError):
    code = "request_too_large"


class TooManyFilesError(UploadError):
    code = "too_many_files"


class UnsupportedMediaTypeError(UploadError):
    code = "unsupported_media_type"


class ContentTypeMismatchError(UnsupportedMediaTypeError):
    """The declared content type (or a CLI file's suffix) disagrees with what the bytes are."""

    code = "content_type_mismatch"


class CorruptFileError(UploadError):
    code = "corrupt_file"


class ImageTooLargeError(UploadError):
    """An image whose header claims more pixels than ``max_image_pixels`` (never decoded)."""

    code = "image_too_large"


class MetadataTooLargeError(InvalidInputError):
    """Persona metadata over ``max_metadata_bytes`` once serialised as JSON."""

    code = "metadata_too_large"
