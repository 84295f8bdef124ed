"""A Python client for the persona registry (HTTP, httpx), and a PackSource over it.

Every call returns a typed model (``persona_core.api_models``, the bodies the registry
answers with); fields a newer registry adds are ignored, so an older client keeps working.
Errors come back as the registry's problem documents; the client raises the persona-core
error class with the same ``code`` where one exists (e.g. ``PersonaNotFoundError``; a 410 is
``PersonaErasedError`` / ``VersionErasedError`` with the erasure's ``started_at`` and
``erased_at``), otherwise :class:`RegistryError` carrying ``code`` and ``status``. A 502, 503
or 504 without a problem document (a proxy or load balancer in front of the registry answered,
not the registry) is :class:`~persona_core.errors.StoreUnavailableError`, as a connection
error or a timeout is: the registry cannot be reached.

:class:`RegistryPackSource` gives a renderer's ``PackCache`` short timeouts by default
(``RENDERER_CONNECT_TIMEOUT_S``, ``RENDERER_READ_TIMEOUT_S``), so a hung registry costs a
load seconds, not the client's 30 s, before the cache serves its disk copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from persona_core import errors as _errors
from persona_core.api_models import (
    AliasHistory,
    AliasList,
    AliasMoveOut,
    AliasOut,
    ErasureFeed,
    ErasureOut,
    PackDiff,
    PersonaOut,
    PersonaPage,
    PersonaSummary,
    ResolvedUrl,
    VersionList,
    VersionOut,
    VersionStatus,
)
from persona_core.errors import (
    ErasedError,
    IntegrityError,
    PackNotPublishedError,
    PersonaCoreError,
    StoreUnavailableError,
)
from persona_core.refs import parse_ref, sha256_hex

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RENDERER_CONNECT_TIMEOUT_S",
    "RENDERER_READ_TIMEOUT_S",
    "TERMINAL_STATUSES",
    "AliasMoveOut",
    "AliasOut",
    "ErasureFeed",
    "ErasureOut",
    "PackDiff",
    "PackNotPublishedError",
    "PackResponse",
    "PersonaOut",
    "PersonaPage",
    "PersonaSummary",
    "RegistryClient",
    "RegistryError",
    "RegistryPackSource",
    "ResolvedUrl",
    "UploadItem",
    "VersionOut",
]

DEFAULT_TIMEOUT_S = 30.0
# A renderer's pack fetches: connecting to a live registry takes milliseconds, and the registry
# starts sending a pack or blob within a second; past these it is treated as unreachable.
RENDERER_CONNECT_TIMEOUT_S = 2.0
RENDERER_READ_TIMEOUT_S = 5.0  # the longest wait for the next bytes, not for the whole body
# Statuses a proxy answers for an upstream it cannot reach or that took too long.
_GATEWAY_STATUSES = frozenset({502, 503, 504})
TERMINAL_STATUSES = frozenset({VersionStatus.PUBLISHED, VersionStatus.BLOCKED, VersionStatus.FAILED})

_Body = TypeVar("_Body", bound=BaseModel)


class RegistryError(PersonaCoreError):
    """An error answer from the registry without a more specific persona-core class."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def _known_errors() -> dict[str, type[PersonaCoreError]]:
    table: dict[str, type[PersonaCoreError]] = {}
    for obj in vars(_errors).values():
        if isinstance(obj, type) and issubclass(obj, PersonaCoreError) and obj is not PersonaCoreError:
            table.setdefault(obj.code, obj)
    return table


_BY_CODE = _known_errors()


@dataclass(frozen=True, slots=True)
class PackResponse:
    persona_id: str
    version: int
    etag: str
    body: bytes  # the pack's stored JSON bytes; empty when not_modified
    not_modified: bool = False
    retracted: str | None = None  # the Persona-Retracted header: "<time>; reason=\"...\""

    def document(self) -> dict[str, Any]:
        """The pack's JSON, parsed (``PackCache`` gives a verified, typed pack)."""
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass(frozen=True, slots=True)
class UploadItem:
    name: str
    data: bytes
    content_type: str = "application/octet-stream"


class RegistryClient:
    """Thin, typed calls to the registry's HTTP API. Use as a context manager or ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            # PackCache falls back to its disk copy on exactly this error.
            raise StoreUnavailableError(f"registry unreachable at {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _parse(self, model: type[_Body], method: str, url: str, **kwargs: Any) -> _Body:
        # extra="ignore": a field a newer registry adds must not break this client.
        return model.model_validate_json(self._send(method, url, **kwargs).content, extra="ignore")

    # -- calls ----------------------------------------------------------------------------

    def health(self) -> bool:
        return self._http.get("/healthz").status_code == 200

    def ready(self) -> bool:
        return self._http.get("/readyz").status_code == 200

    def create_persona(self, persona_id: str, metadata: dict[str, Any] | None = None) -> PersonaOut:
        body = {"persona_id": persona_id, "metadata": metadata or {}}
        return self._parse(PersonaOut, "POST", "/v1/personas", json=body)

    def get_persona(self, persona_id: str) -> PersonaOut:
        return self._parse(PersonaOut, "GET", f"/v1/personas/{persona_id}")

    def list_personas(self, limit: int = 50, after: str | None = None) -> PersonaPage:
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["after"] = after
        return self._parse(PersonaPage, "GET", "/v1/personas", params=params)

    def iter_personas(self, page_size: int = 50) -> Iterator[PersonaSummary]:
        after = None
        while True:
            page = self.list_personas(limit=page_size, after=after)
            yield from page.items
            after = page.next_after
            if not after:
                return

    def create_version(
        self,
        persona_id: str,
        files: Sequence[UploadItem | tuple[str, bytes]],
        manifest: dict[str, Any] | None = None,
    ) -> VersionOut:
        """Upload inputs; returns the pending version (202). The build runs elsewhere."""
        parts = []
        for item in files:
            f = item if isinstance(item, UploadItem) else UploadItem(item[0], item[1])
            parts.append(("files", (f.name, f.data, f.content_type)))
        data = {"manifest": json.dumps(manifest)} if manifest is not None else None
        url = f"/v1/personas/{persona_id}/versions"
        return self._parse(VersionOut, "POST", url, files=parts, data=data)

    def list_versions(self, persona_id: str) -> list[VersionOut]:
        return self._parse(VersionList, "GET", f"/v1/personas/{persona_id}/versions").items

    def get_version(self, persona_id: str, version: int | str = "latest") -> VersionOut:
        return self._parse(VersionOut, "GET", f"/v1/personas/{persona_id}/versions/{version}")

    def wait_for_version(
        self, persona_id: str, version: int, timeout_s: float = 600.0, poll_s: float = 1.0
    ) -> VersionOut:
        """Poll until the version is published, blocked or failed; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.get_version(persona_id, version)
            if record.status in TERMINAL_STATUSES:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"{persona_id} v{version} still {record.status} after {timeout_s} s")
            time.sleep(poll_s)

    def get_pack(
        self,
        persona_id: str,
        version: int | str = "latest",
        *,
        if_none_match: str | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> PackResponse:
        """The pack's bytes as stored; ``not_modified`` when ``if_none_match`` is still current.
        ``timeout`` (seconds, or an ``httpx.Timeout``) overrides the client's for this call."""
        headers = {"If-None-Match": if_none_match} if if_none_match else {}
        url = f"/v1/personas/{persona_id}/versions/{version}/pack"
        response = self._send("GET", url, headers=headers, **_timeout(timeout))
        return PackResponse(
            persona_id=persona_id,
            version=int(response.headers["X-Persona-Version"]),
            etag=response.headers["ETag"],
            body=response.content if response.status_code == 200 else b"",
            not_modified=response.status_code == 304,
            retracted=response.headers.get("Persona-Retracted"),
        )

    def diff(self, persona_id: str, from_version: int | str, to_version: int | str = "latest") -> PackDiff:
        """What changed between two published versions (numbers, ``latest`` or aliases)."""
        params = {"from": str(from_version), "to": str(to_version)}
        return self._parse(PackDiff, "GET", f"/v1/personas/{persona_id}/diff", params=params)

    # -- aliases and retraction -----------------------------------------------------------

    def list_aliases(self, persona_id: str) -> list[AliasOut]:
        return self._parse(AliasList, "GET", f"/v1/personas/{persona_id}/aliases").items

    def get_alias(self, persona_id: str, name: str) -> AliasOut:
        """Where the alias points; AliasNotFoundError when it does not exist."""
        return self._parse(AliasOut, "GET", f"/v1/personas/{persona_id}/aliases/{name}")

    def set_alias(
        self, persona_id: str, name: str, version: int | str, *, expected: int | None, reason: str
    ) -> AliasMoveOut:
        """Point ``name`` at ``version`` (a number, ``latest`` or another alias) if it points at
        ``expected`` now (None: it must not exist yet); a promote key. AliasConflictError when
        someone moved it first: read it again and decide."""
        body = {"version": version, "reason": reason, "expected_version": expected}
        return self._parse(AliasMoveOut, "PUT", f"/v1/personas/{persona_id}/aliases/{name}", json=body)

    def delete_alias(self, persona_id: str, name: str, *, expected: int, reason: str) -> AliasMoveOut:
        body = {"reason": reason, "expected_version": expected}
        return self._parse(AliasMoveOut, "DELETE", f"/v1/personas/{persona_id}/aliases/{name}", json=body)

    def rollback_alias(self, persona_id: str, name: str, *, reason: str) -> AliasMoveOut:
        """Move ``name`` back to its previous target in its history."""
        url = f"/v1/personas/{persona_id}/aliases/{name}/rollback"
        return self._parse(AliasMoveOut, "POST", url, json={"reason": reason})

    def alias_history(self, persona_id: str, name: str, limit: int = 100) -> list[AliasMoveOut]:
        """The alias's moves, newest first."""
        url = f"/v1/personas/{persona_id}/aliases/{name}/history"
        return self._parse(AliasHistory, "GET", url, params={"limit": limit}).items

    def retract_version(self, persona_id: str, version: int, *, reason: str) -> VersionOut:
        """Withdraw a published version: ``latest`` skips it, its number still serves it."""
        url = f"/v1/personas/{persona_id}/versions/{version}/retract"
        return self._parse(VersionOut, "POST", url, json={"reason": reason})

    def resolve_url(self, ref: str, ttl_s: int = 3600) -> ResolvedUrl:
        """A signed URL that needs no API key (``.url``), valid until ``.expires_at``."""
        body = {"ref": ref, "mode": "url", "ttl_s": ttl_s}
        return self._parse(ResolvedUrl, "POST", "/v1/assets/resolve", json=body)

    def resolve_bytes(self, ref: str, *, timeout: float | httpx.Timeout | None = None) -> bytes:
        """The blob's bytes, checked against the ref (IntegrityError if they differ)."""
        response = self._send("POST", "/v1/assets/bytes", json={"ref": ref}, **_timeout(timeout))
        return _checked(ref, response.content)

    def erase_persona(self, persona_id: str, version: int | None = None, *, reason: str) -> ErasureOut:
        """Erase the persona, or only ``version`` (admin key; ``reason`` is required). Calling it
        again resumes an interrupted erasure or reports the finished one (``already_erased``)."""
        url = f"/v1/personas/{persona_id}"
        if version is not None:
            url += f"/versions/{version}"
        return self._parse(ErasureOut, "DELETE", url, json={"reason": reason})

    def erasures(self, since: datetime | None = None, limit: int = 100) -> ErasureFeed:
        """Finished erasures after ``since``, oldest first: what a renderer fleet purges."""
        params: dict[str, str | int] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        return self._parse(ErasureFeed, "GET", "/v1/erasures", params=params)

    def fetch_signed(self, url: str) -> bytes:
        """GET a signed URL (registry HMAC URL or S3 presign) without sending the API key."""
        response = httpx.get(url, timeout=self._http.timeout)
        if response.status_code >= 400:
            raise _error_from(response)
        return response.content


class RegistryPackSource:
    """A ``persona_core.runtime.PackSource`` over the registry's HTTP API, for ``PackCache``.

    Its calls wait at most ``connect_timeout_s`` to connect and ``read_timeout_s`` for the next
    bytes of an answer (defaults 2 s and 5 s, whatever the client's own timeout): an
    unreachable, hung or gateway-failed registry raises StoreUnavailableError quickly, which
    ``PackCache`` answers from its disk copy."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        connect_timeout_s: float = RENDERER_CONNECT_TIMEOUT_S,
        read_timeout_s: float = RENDERER_READ_TIMEOUT_S,
    ) -> None:
        if connect_timeout_s <= 0 or read_timeout_s <= 0:
            raise _errors.InvalidInputError("renderer timeouts must be > 0 seconds")
        self.client = client
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        which = "latest" if version is None else version
        return self.client.get_pack(persona_id, which, timeout=self.timeout).body

    def alias_document(self, persona_id: str, alias: str) -> bytes:
        return self.client.get_pack(persona_id, alias, timeout=self.timeout).body

    def blob(self, ref: str) -> bytes:
        return self.client.resolve_bytes(ref, timeout=self.timeout)


def _timeout(timeout: float | httpx.Timeout | None) -> dict[str, float | httpx.Timeout]:
    return {} if timeout is None else {"timeout": timeout}


def _checked(ref: str, data: bytes) -> bytes:
    if sha256_hex(data) != parse_ref(ref).digest:
        raise IntegrityError(f"bytes received for {parse_ref(ref).blob} do not hash to it")
    return data


def _error_from(response: httpx.Response) -> PersonaCoreError:
    code, detail = f"http_{response.status_code}", response.reason_phrase
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        code = str(doc.get("code", code))
        detail = str(doc.get("detail", detail))
    elif response.text:
        detail = response.text[:500]  # e.g. an S3 XML error from a presigned URL
    if response.status_code in _GATEWAY_STATUSES and not (isinstance(doc, dict) and "code" in doc):
        # Not the registry's answer: what stands in front of it could not reach it in time.
        unavailable = StoreUnavailableError(
            f"registry unreachable: {response.status_code} {response.reason_phrase} from "
            f"{response.url.host} without a problem document ({detail[:200]})"
        )
        unavailable.status = response.status_code  # type: ignore[attr-defined]
        return unavailable
    cls = _BY_CODE.get(code)
    if cls is None:
        return RegistryError(response.status_code, code, detail)
    if issubclass(cls, ErasedError):
        started, erased = _time(doc, "started_at"), _time(doc, "erased_at")
        if started is None:
            return RegistryError(response.status_code, code, detail)
        err: PersonaCoreError = cls(detail, started_at=started, erased_at=erased)
    else:
        err = cls(detail)
    err.status = response.status_code  # type: ignore[attr-defined]
    return err


def _time(doc: object, name: str) -> datetime | None:
    value = doc.get(name) if isinstance(doc, dict) else None
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
