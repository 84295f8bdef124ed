"""A client that ``openapi-python-client`` generates from the served ``/openapi.json`` works
against a real registry over HTTP: it lists versions, fetches the pack as a typed model,
revalidates it with ``If-None-Match`` (304), and resolves an asset as a URL and as bytes.

The client is generated into the test's tmp dir at test time, so a change to the routes that a
generated client cannot live with (one response in two content types, an untyped body, an
undeclared header parameter) fails here.
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from registry_support import PUBLISHED, Registry, make_registry

from registry_api.server import BackgroundServer, reserve_socket

pytestmark = [pytest.mark.slow]

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "generated_registry_client"
# No post hooks: the generated code is imported, not linted or formatted.
CONFIG = f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Registry, BackgroundServer]]:
    sock = reserve_socket()
    reg = make_registry(tmp_path / "registry", public_base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs, sock=sock, with_grpc=False)
    with server:
        yield reg, server
    reg.meta.close()


@pytest.fixture
def generated(live: tuple[Registry, BackgroundServer], tmp_path: Path) -> Iterator[ModuleType]:
    """The client package generated from the spec the running registry serves."""
    _, server = live
    spec = tmp_path / "openapi.json"
    spec.write_bytes(httpx.get(f"{server.base_url}/openapi.json").raise_for_status().content)
    config = tmp_path / "client.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "client"
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(out), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # A part the generator could not type is left out with a warning: none may be.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _api(package: ModuleType, tag: str, operation: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")


def test_a_generated_client_lists_fetches_revalidates_and_resolves(
    live: tuple[Registry, BackgroundServer], generated: ModuleType
) -> None:
    reg, server = live
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=server.base_url, token=reg.keys["read"])

    versions = _api(generated, "versions", "list_versions").sync(persona_id=PUBLISHED, client=client)
    assert isinstance(versions, models.VersionList)
    assert [(v.version, v.status) for v in versions.items] == [(1, "published"), (2, "pending")]

    get_pack = _api(generated, "versions", "get_pack")
    fetched = get_pack.sync_detailed(persona_id=PUBLISHED, version="1", client=client)
    assert fetched.status_code == HTTPStatus.OK
    pack = fetched.parsed
    assert isinstance(pack, models.PersonaPack)  # typed, not a dict
    assert (pack.persona_id, pack.version, pack.content_hash) == (PUBLISHED, 1, reg.pack.content_hash)
    etag = fetched.headers["etag"]

    again = get_pack.sync_detailed(persona_id=PUBLISHED, version="1", client=client, if_none_match=etag)
    assert again.status_code == HTTPStatus.NOT_MODIFIED
    assert again.headers["etag"] == etag

    anchor = reg.pack.anchor_sets[next(iter(reg.pack.anchor_sets))][0]
    resolve = _api(generated, "assets", "resolve_asset")
    signed = resolve.sync(client=client, body=models.ResolveRequest(ref=anchor.image_ref, ttl_s=60))
    assert isinstance(signed, models.ResolvedUrl)
    by_url = httpx.get(signed.url)  # the signed URL needs no key
    assert by_url.status_code == 200

    get_bytes = _api(generated, "assets", "get_asset_bytes")
    blob = get_bytes.sync_detailed(client=client, body=models.AssetBytesRequest(ref=anchor.image_ref))
    assert blob.status_code == HTTPStatus.OK
    data = blob.parsed.payload.read()
    assert data == by_url.content
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == anchor.image_ref


def test_a_generated_client_gets_typed_problems(
    live: tuple[Registry, BackgroundServer], generated: ModuleType
) -> None:
    """Refusals parse as the documented problem models, with their stable codes."""
    reg, server = live
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=server.base_url, token=reg.keys["read"])
    get_pack = _api(generated, "versions", "get_pack")

    missing = get_pack.sync(persona_id="nobody", version="1", client=client)
    assert isinstance(missing, models.Problem)
    assert (missing.status, missing.code) == (404, "persona_not_found")
    bad_id = get_pack.sync(persona_id="Not-An-Id", version="1", client=client)
    assert isinstance(bad_id, models.Problem)
    assert (bad_id.status, bad_id.code) == (422, "invalid_name")
    unpublished = get_pack.sync(persona_id=PUBLISHED, version="2", client=client)
    assert isinstance(unpublished, models.Problem)
    assert unpublished.code == "pack_not_published"
    anonymous = generated.Client(base_url=server.base_url)
    refused = _api(generated, "versions", "list_versions").sync(persona_id=PUBLISHED, client=anonymous)
    assert isinstance(refused, models.Problem)
    assert refused.code == "unauthenticated"
