"""The bad-input corpus: the same bad file gets the same verdict through HTTP, gRPC and the CLI.

Each case is one upload (a good photo plus the bad file, or the bad file alone); every door
must refuse it with the same stable error code, and nothing may be stored: no version, and
for the CLI not even the persona it would have created.
"""

from __future__ import annotations

import io
import json
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image
from registry_support import OTHER, Registry, fixture_bytes, make_registry, png_claiming
from typer.testing import CliRunner

from persona_cli.main import app as cli_app
from persona_core.settings import Settings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server

PHOTO = fixture_bytes("faces", "obama.jpg")
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def _gif_named_jpg() -> bytes:
    return GIF


def _webp_cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    data: Callable[[], bytes]
    code: str
    with_good_photo: bool = True


# name, bytes, expected code. Accepted inputs (16-bit PNG, CMYK, grayscale, EXIF-rotated,
# 8 kHz / 96 kHz WAV) are in the accepted table below.
CASES = [
    Case("zero_byte", "empty.jpg", lambda: b"", "corrupt_file"),
    Case("truncated_jpeg", "cut.jpg", lambda: PHOTO[: len(PHOTO) // 3], "corrupt_file"),
    Case("text_named_jpg", "notes.jpg", lambda: b"just some text\n" * 10, "unsupported_media_type"),
    Case("gif_named_jpg", "anim.jpg", _gif_named_jpg, "unsupported_media_type"),
    Case("heic", "photo.jpg", lambda: HEIC, "content_type_mismatch"),
    Case("png_named_jpg", "flat.jpg", lambda: png_claiming(8, 8), "content_type_mismatch"),
    Case("decompression_bomb", "bomb.png", lambda: png_claiming(30000, 30000), "image_too_large"),
    Case(
        "corrupt_jpeg_fixture",
        "corrupt.jpg",
        lambda: fixture_bytes("faces", "corrupt.jpg"),
        "unsupported_media_type",
    ),
    Case("trailing_newline_name", "x.jpg\n", lambda: PHOTO, "invalid_name"),
    Case("space_in_name", "my photo.jpg", lambda: PHOTO, "invalid_name"),
    Case("leading_dash_name", "-x.jpg", lambda: PHOTO, "invalid_name"),
    Case("long_name", "a" * 200 + ".jpg", lambda: PHOTO, "invalid_name"),
    Case("too_big_file", "huge.jpg", lambda: PHOTO + b"\0" * (3 * 1024 * 1024), "file_too_large"),
]
# Names only HTTP and gRPC can carry (a file system cannot hold them, or the CLI never sees them).
WIRE_ONLY = [
    Case("traversal", "../../etc/passwd.jpg", lambda: PHOTO, "invalid_name"),
    Case("absolute", "/etc/x.jpg", lambda: PHOTO, "invalid_name"),
    Case("nul_name", "x\x00.jpg", lambda: PHOTO, "invalid_name"),
    Case("cr_name", "x\r.jpg", lambda: PHOTO, "invalid_name"),
    Case("lf_inside_name", "x\ny.jpg", lambda: PHOTO, "invalid_name"),
    Case("name_300_chars", "a" * 300 + ".jpg", lambda: PHOTO, "invalid_name"),
    Case("non_utf8_lookalike", "ph\u043eto.jpg", lambda: PHOTO, "invalid_name"),
]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = make_registry(tmp_path / "reg")
    yield r
    r.http.close()
    r.meta.close()


def _files(case: Case) -> list[tuple[str, bytes]]:
    files = [("good.jpg", PHOTO)] if case.with_good_photo else []
    return [*files, (case.name, case.data())]


def _http(reg: Registry, case: Case) -> str:
    files = [
        ("files", (name, data, mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"))
        for name, data in _files(case)
    ]
    r = reg.http.post(f"/v1/personas/{OTHER}/versions", files=files, headers=reg.headers("build"))
    assert r.status_code >= 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["code"])


def _grpc(reg: Registry, case: Case) -> str:
    server, port = start_grpc_server(reg.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.PersonaRegistryStub(channel)
        files = [
            pb.UploadFile(
                name=name, data=data, content_type=mimetypes.guess_type(name, strict=False)[0] or ""
            )
            for name, data in _files(case)
        ]
        with pytest.raises(grpc.RpcError) as err:
            stub.CreatePersonaVersion(
                pb.CreatePersonaVersionRequest(persona_id=OTHER, files=files),
                metadata=(("x-api-key", reg.keys["build"]),),
            )
        return dict(err.value.trailing_metadata() or ())["error-code"]  # type: ignore[attr-defined]
    finally:
        channel.close()
        server.stop(grace=None)


def _cli(reg: Registry, case: Case, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in _files(case):
        (folder / name).write_bytes(data)
    env = env or {"PERSONA_MAX_UPLOAD_FILE_BYTES": str(reg.settings.max_upload_file_bytes)}
    result = CliRunner().invoke(
        cli_app,
        ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", "newbie"],
        env=env,
    )
    assert result.exit_code == 2, result.stdout
    # Refused before anything was written: not even the persona exists.
    assert [p.persona_id for p in reg.meta.list_personas()] == ["alice", "bob"]
    return str(json.loads(result.stdout)["error"]["code"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_verdict_through_every_door(reg: Registry, case: Case, tmp_path: Path) -> None:
    verdicts = {"http": _http(reg, case), "grpc": _grpc(reg, case), "cli": _cli(reg, case, tmp_path)}
    assert verdicts == dict.fromkeys(verdicts, case.code)
    assert reg.meta.list_versions(OTHER) == []


@pytest.mark.parametrize("case", WIRE_ONLY, ids=lambda c: c.id)
def test_unsafe_names_refused_over_the_wire(reg: Registry, case: Case) -> None:
    assert (_http(reg, case), _grpc(reg, case)) == (case.code, case.code)
    assert reg.meta.list_versions(OTHER) == []


def test_cli_refuses_a_symlink_and_stores_nothing(reg: Registry, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(PHOTO)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(PHOTO)
    (folder / "link.jpg").symlink_to(secret)
    result = CliRunner().invoke(
        cli_app, ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", "newbie"]
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "invalid_upload"
    assert "symbolic link" in json.loads(result.stdout)["error"]["message"]
    assert [p.persona_id for p in reg.meta.list_personas()] == ["alice", "bob"]


def test_too_many_files_same_code_http_and_cli(reg: Registry, tmp_path: Path) -> None:
    n = reg.settings.max_upload_files + 1
    files = [("files", (f"p{i}.jpg", PHOTO, "image/jpeg")) for i in range(n)]
    r = reg.http.post(f"/v1/personas/{OTHER}/versions", files=files, headers=reg.headers("build"))
    assert r.json()["code"] == "too_many_files"
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(n):
        (folder / f"p{i}.jpg").write_bytes(PHOTO)
    result = CliRunner().invoke(
        cli_app,
        ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", "newbie"],
        env={"PERSONA_MAX_UPLOAD_FILES": str(reg.settings.max_upload_files)},
    )
    assert json.loads(result.stdout)["error"]["code"] == "too_many_files"


def _png16() -> bytes:
    ok, buf = cv2.imencode(".png", np.full((64, 64, 3), 30000, np.uint16))
    assert ok
    return bytes(buf)


def _gray_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    assert ok
    return bytes(buf)


@pytest.mark.parametrize(
    ("name", "make"),
    [("deep.png", _png16), ("cmyk.jpg", _webp_cmyk_jpeg), ("gray.jpg", _gray_jpeg)],
    ids=["png16", "cmyk", "grayscale"],
)
def test_unusual_but_valid_images_are_accepted_everywhere(
    reg: Registry, name: str, make: Callable[[], bytes]
) -> None:
    r = reg.http.post(
        f"/v1/personas/{OTHER}/versions",
        files=[("files", (name, make(), mimetypes.guess_type(name)[0]))],
        headers=reg.headers("build"),
    )
    assert r.status_code == 202, r.text


# Persona ids that look like "alice" (or like a path) but are not it: every door refuses them
# with invalid_name, creates nothing, and never answers with alice's data.
LOOKALIKE_IDS = [
    "\u0430lice",  # Cyrillic a
    "alice\u200b",  # zero-width space
    "\uff41lice",  # fullwidth a
    "ALICE",
    "al ice",
    "-alice",
    "a" * 65,
    "al/ice",
    "..",
]


@pytest.mark.parametrize("persona_id", LOOKALIKE_IDS, ids=ascii)
def test_lookalike_persona_ids_are_refused_alike_through_every_door(
    reg: Registry, persona_id: str, tmp_path: Path
) -> None:
    r = reg.http.post("/v1/personas", json={"persona_id": persona_id}, headers=reg.headers("admin"))
    server, port = start_grpc_server(reg.service, 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.PersonaRegistryStub(channel).CreatePersona(
                pb.CreatePersonaRequest(persona_id=persona_id), metadata=(("x-api-key", reg.keys["admin"]),)
            )
    finally:
        server.stop(grace=None)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(PHOTO)
    cli = CliRunner().invoke(
        cli_app, ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", persona_id]
    )
    codes = {
        "http": r.json()["code"],
        "grpc": dict(err.value.trailing_metadata() or ())["error-code"],  # type: ignore[attr-defined]
        "cli": json.loads(cli.stdout)["error"]["code"],
    }
    assert codes == dict.fromkeys(codes, "invalid_name")
    assert cli.exit_code == 2
    assert [p.persona_id for p in reg.meta.list_personas()] == ["alice", "bob"]
    looked_up = reg.http.get(f"/v1/personas/{persona_id}", headers=reg.headers("read"))
    assert looked_up.status_code in (400, 404, 422), looked_up.text
    assert "Alice" not in looked_up.text


def test_a_100_mb_photo_is_refused_by_every_door_at_the_default_limits(tmp_path: Path) -> None:
    """The literal 100 MB file of the probe, against the shipped limits (25 MB a file)."""
    defaults = Settings()
    reg = make_registry(tmp_path / "reg", max_upload_file_bytes=defaults.max_upload_file_bytes,
                        max_upload_files=defaults.max_upload_files,
                        max_upload_total_bytes=defaults.max_upload_total_bytes)
    try:
        huge = Case("photo_100_mb", "huge.jpg", lambda: PHOTO + b"\0" * (100 * 1024 * 1024), "file_too_large")
        env = {"PERSONA_MAX_UPLOAD_FILE_BYTES": str(defaults.max_upload_file_bytes)}
        verdicts = {"http": _http(reg, huge), "grpc": _grpc(reg, huge), "cli": _cli(reg, huge, tmp_path, env)}
        assert verdicts == dict.fromkeys(verdicts, "file_too_large")
        assert reg.meta.list_versions(OTHER) == []
    finally:
        reg.http.close()
        reg.meta.close()
