"""Registry fixtures: a real app over a real SQLite file and blob folder, real API keys of
every kind, and one published persona."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from persona_core.pack import PersonaPack
from persona_core.publish import publish_pack
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from registry_api.config import ApiSettings
from registry_api.key_store import ApiKeyStore
from registry_api.main import create_app
from registry_api.service import RegistryService

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PUBLISHED = "alice"  # has v1 published and v2 pending
OTHER = "bob"  # the persona the restricted key may use


@dataclass
class Registry:
    settings: ApiSettings
    meta: SqlMetadataStore
    blobs: LocalBlobStore
    http: TestClient
    service: RegistryService
    keys: dict[str, str]  # kind -> plaintext
    pack: PersonaPack  # alice v1

    def headers(self, kind: str | None) -> dict[str, str]:
        return {} if kind is None else {"X-API-Key": self.keys[kind]}


def registry_settings(home: Path, **overrides: object) -> ApiSettings:
    base: dict[str, object] = {
        "env": "test",
        "home": home,
        "public_base_url": "http://testserver",
        "max_upload_file_bytes": 2 * 1024 * 1024,
        "max_upload_files": 4,
        "max_upload_total_bytes": 6 * 1024 * 1024,
        "api_docs": True,  # the fuzz run and the OpenAPI checks read /openapi.json
    }
    base.update(overrides)
    return ApiSettings(**base)  # type: ignore[arg-type]


def make_registry(home: Path, **overrides: object) -> Registry:
    settings = registry_settings(home, **overrides)
    meta = SqlMetadataStore.open(settings.resolved_database_url)
    blobs = LocalBlobStore(
        home / "blobs", settings.signing_secret.get_secret_value().encode(), settings.public_base_url
    )
    app = create_app(settings, metadata=meta, blobs=blobs)
    keys = {
        "read": ApiKeyStore.of(meta).create_api_key("reader", ["read"])[1],
        "build": ApiKeyStore.of(meta).create_api_key("builder", ["build"])[1],
        "admin": ApiKeyStore.of(meta).create_api_key("admin", ["admin"])[1],
        "other": ApiKeyStore.of(meta).create_api_key("bob-only", ["admin"], persona_ids=[OTHER])[1],
    }
    meta.create_persona(PUBLISHED, {"display_name": "Alice"})
    meta.create_persona(OTHER, {})
    meta.create_version(PUBLISHED, {"files": []})
    pack = make_pack(blobs, PUBLISHED, 1, n_anchors=6)
    publish_pack(meta, blobs, pack)
    meta.create_version(PUBLISHED, {"files": []})  # v2 stays pending
    return Registry(settings, meta, blobs, TestClient(app), app.state.service, keys, pack)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = make_registry(tmp_path)
    yield reg
    reg.http.close()
    reg.meta.close()


def fixture_bytes(*parts: str) -> bytes:
    return FIXTURES.joinpath(*parts).read_bytes()


def multipart_body(
    parts: list[tuple[str, str, bytes, str]], boundary: str = "persona-test-boundary"
) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name, bytes, content type) parts, the names
    written as UTF-8 exactly as given (as curl and browsers send them; httpx percent-encodes
    some characters), and its Content-Type header."""
    out = b""
    for field, name, data, content_type in parts:
        out += (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_claiming(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose valid IHDR claims width x height (an image bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
