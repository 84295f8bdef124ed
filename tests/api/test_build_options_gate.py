"""Build options sent with an upload (drift lines, behaviour, voice config) meet the one upload
gate: a bad one gets the same verdict through HTTP, gRPC and the CLI, before anything is
written (no version, no manifest, and for the CLI not even the persona it would create)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from registry_support import OTHER, Registry, fixture_bytes, make_registry
from typer.testing import CliRunner

from persona_cli.main import app as cli_app
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server

PHOTO = fixture_bytes("faces", "obama.jpg")

# (id, manifest, what the refusal names)
BAD_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_line", {"refresh": {"identity_drift": 0.7}}, "unknown refresh lines ['identity_drift']"),
    ("line_out_of_range", {"refresh": {"identity_drift_warn": 2.0}}, "identity_drift_warn"),
    ("fail_above_warn", {"refresh": {"identity_drift_warn": 0.5, "identity_drift_fail": 0.7}},
     "identity_drift_fail 0.7 is above identity_drift_warn 0.5"),
    ("turns_not_a_number", {"refresh": {"refresh_every_turns": "often"}}, "refresh"),
    ("zero_turns", {"refresh": {"refresh_every_turns": 0}}, "refresh_every_turns"),
    ("calibration_given", {"refresh": {"identity_calibration": 1}}, "unknown refresh lines"),
    ("unknown_voice_field", {"voice": {"provider_voice_id": "v", "pitch": 3}}, "voice"),
]
CASES = [pytest.param(manifest, says, id=case_id) for case_id, manifest, says in BAD_OPTIONS]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = make_registry(tmp_path / "reg")
    yield r
    r.http.close()
    r.meta.close()


def _stored(reg: Registry) -> tuple[object, ...]:
    personas = [p.persona_id for p in reg.meta.list_personas()]
    return personas, reg.meta.list_versions(OTHER), reg.blobs.list_objects("manifests/")


@pytest.mark.parametrize(("manifest", "says"), CASES)
def test_http_refuses_bad_build_options_and_stores_nothing(reg: Registry, manifest: dict[str, Any],
                                                            says: str) -> None:
    before = _stored(reg)
    r = reg.http.post(f"/v1/personas/{OTHER}/versions", files=[("files", ("good.jpg", PHOTO, "image/jpeg"))],
                      data={"manifest": json.dumps(manifest)}, headers=reg.headers("build"))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_manifest"
    assert says in r.json()["detail"]
    assert _stored(reg) == before


@pytest.mark.parametrize(("manifest", "says"), CASES)
def test_grpc_refuses_bad_build_options_and_stores_nothing(reg: Registry, manifest: dict[str, Any],
                                                            says: str) -> None:
    before = _stored(reg)
    server, port = start_grpc_server(reg.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.PersonaRegistryStub(channel)
        request = pb.CreatePersonaVersionRequest(
            persona_id=OTHER, files=[pb.UploadFile(name="good.jpg", data=PHOTO, content_type="image/jpeg")],
            manifest_json=json.dumps(manifest),
        )
        with pytest.raises(grpc.RpcError) as err:
            stub.CreatePersonaVersion(request, metadata=(("x-api-key", reg.keys["build"]),))
    finally:
        channel.close()
        server.stop(grace=None)
    assert dict(err.value.trailing_metadata() or ())["error-code"] == "invalid_manifest"  # type: ignore[attr-defined]
    assert says in (err.value.details() or "")  # type: ignore[attr-defined]
    assert _stored(reg) == before


@pytest.mark.parametrize(("manifest", "says"), CASES)
def test_cli_refuses_bad_build_options_and_creates_nothing(reg: Registry, tmp_path: Path,
                                                           manifest: dict[str, Any], says: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(PHOTO)
    for key, doc in manifest.items():  # the folder's config files: refresh.json, voice.json
        (folder / f"{key}.json").write_text(json.dumps(doc))
    before = _stored(reg)
    result = CliRunner().invoke(
        cli_app, ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", "newbie"]
    )
    assert result.exit_code == 2, result.stdout
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid_manifest"
    assert says in error["message"]
    assert _stored(reg) == before  # not even the persona "newbie"
