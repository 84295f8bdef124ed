"""API-edge errors and the one table that maps every persona-core error to HTTP and gRPC.

Domain code raises typed errors from :mod:`persona_core.errors`; the registry adds the few
that only exist at its edge (auth, upload limits). ``status_for`` walks the exception's
class hierarchy, so a new subclass inherits its parent's status and keeps its own ``code``.
"""

from __future__ import annotations

from typing import Any

import grpc

from persona_core.errors import (
    AliasConflictError,
    AlreadyExistsError,
    ContentTypeMismatchError,
    CorruptFileError,
    ErasedError,
    FileTooLargeError,
    ImageTooLargeError,
    ImmutableVersionError,
    IntegrityError,
    InvalidInputError,
    InvalidManifestError,
    InvalidTransitionError,
    MetadataTooLargeError,
    NoFilesError,
    NotFoundError,
    PackValidationError,
    PersonaCoreError,
    RequestTooLargeError,
    SignatureError,
    StoreUnavailableError,
    TooManyFilesError,
    UnsupportedMediaTypeError,
    UploadError,
)

# The upload errors live in persona_core (one gate for every door); re-exported for the routes.
__all__ = [
    "ContentTypeMismatchError",
    "CorruptFileError",
    "FileTooLargeError",
    "ImageTooLargeError",
    "NoFilesError",
    "RequestTooLargeError",
    "TooManyFilesError",
    "UnsupportedMediaTypeError",
    "UploadError",
]

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://persona-core.dev/problems/"


class AuthenticationError(PersonaCoreError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class PermissionDeniedError(PersonaCoreError):
    code = "forbidden"


class InsufficientScopeError(PermissionDeniedError):
    code = "insufficient_scope"


class PersonaForbiddenError(PermissionDeniedError):
    """The key is restricted to other personas."""

    code = "persona_forbidden"


class TooManyAuthFailuresError(PersonaCoreError):
    """A client IP presented too many wrong API keys: refused, key unchecked, for a while."""

    code = "too_many_auth_failures"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AliasPreconditionFailedError(AliasConflictError):
    """A move whose ``If-Match`` no longer holds: the same ``alias_conflict``, answered 412."""


class PreconditionRequiredError(InvalidInputError):
    """A move that says nothing about where the caller believes the alias points."""

    code = "precondition_required"


# Most specific first is not needed: lookup follows the MRO of the raised class.
_HTTP_STATUS: dict[type[PersonaCoreError], int] = {
    AuthenticationError: 401,
    TooManyAuthFailuresError: 429,
    PermissionDeniedError: 403,
    SignatureError: 403,
    NotFoundError: 404,
    AlreadyExistsError: 409,
    AliasConflictError: 409,
    AliasPreconditionFailedError: 412,
    PreconditionRequiredError: 428,
    # Erased, or its erasure under way: never served again (RFC 9110 Gone).
    ErasedError: 410,
    ImmutableVersionError: 409,
    InvalidTransitionError: 409,
    FileTooLargeError: 413,
    ImageTooLargeError: 413,
    RequestTooLargeError: 413,
    TooManyFilesError: 413,
    MetadataTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    CorruptFileError: 422,
    InvalidManifestError: 422,
    PackValidationError: 422,
    InvalidInputError: 400,
    # Stored bytes that no longer match their hash are the server's fault, never the client's.
    IntegrityError: 500,
    StoreUnavailableError: 503,
    PersonaCoreError: 500,
}

_GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    # gRPC has no "gone": a deleted resource is NOT_FOUND; error-code says persona_erased /
    # version_erased, and trailing metadata carries the times.
    410: grpc.StatusCode.NOT_FOUND,
    412: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    428: "Precondition required",
    429: "Too many requests",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}


def status_for(exc: PersonaCoreError) -> int:
    for cls in type(exc).__mro__:
        if cls in _HTTP_STATUS:
            return _HTTP_STATUS[cls]
    return 500


def grpc_status_for(exc: PersonaCoreError) -> grpc.StatusCode:
    status = status_for(exc)
    if isinstance(exc, AliasConflictError):
        return grpc.StatusCode.ABORTED  # a lost compare-and-set: read again and retry
    if isinstance(exc, (ImmutableVersionError, InvalidTransitionError)):
        return grpc.StatusCode.FAILED_PRECONDITION
    return _GRPC_STATUS.get(status, grpc.StatusCode.UNKNOWN)


def problem(status: int, code: str, detail: str, instance: str = "", **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document with the registry's stable ``code``."""
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        doc["instance"] = instance
    doc.update(extra)
    return doc


def problem_fields(exc: PersonaCoreError) -> dict[str, str | None]:
    """Members a problem document adds for this error: an erasure's times (RFC 3339)."""
    if isinstance(exc, ErasedError):
        return {
            "started_at": exc.started_at.isoformat(),
            "erased_at": exc.erased_at.isoformat() if exc.erased_at else None,
        }
    return {}


def public_detail(exc: PersonaCoreError) -> str:
    # Internal failures keep their message in the server log only.
    return str(exc) if status_for(exc) < 500 else exc.code.replace("_", " ")
