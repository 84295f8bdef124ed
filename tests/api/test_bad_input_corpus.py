"""The bad-input corpus: the same file gets the same verdict through HTTP, gRPC and the CLI.

Refused cases are one upload (a good photo plus the bad file, or the bad file alone); every
door must refuse it with the same stable error code, and nothing may be stored: no version,
and for the CLI not even the persona it would have created. Skipped cases (a file in no
accepted format next to a good photo) must be skipped with the same reason everywhere, and
accepted cases (a name that lies about the format, names people really have) must be stored
as what their bytes are, under the same label, through every door.
"""

from __future__ import annotations

import io
import json
import mimetypes
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from registry_support import OTHER, Registry, fixture_bytes, make_registry, multipart_body, png_claiming
from typer.testing import CliRunner

from persona_cli.inputs import folder_upload
from persona_cli.main import app as cli_app
from persona_core.settings import Settings
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server

PHOTO = fixture_bytes("faces", "obama.jpg")
WAV = fixture_bytes("voices", "a1.wav")
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 400


def _gif_named_jpg() -> bytes:
    return GIF


def _webp_cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (32, 32), (0, 0, 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


def _reencoded(ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR))
    assert ok
    return bytes(buf)


def _bmp() -> bytes:
    return _reencoded(".bmp")


def _opus() -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf, (np.sin(np.arange(48000) / 10) * 0.3).astype(np.float32), 48000, format="OGG", subtype="OPUS"
    )
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    data: Callable[[], bytes]
    code: str
    with_good_photo: bool = True


# name, bytes, expected code. Accepted inputs (16-bit PNG, CMYK, grayscale, EXIF-rotated,
# 8 kHz / 96 kHz WAV, lying names, real-world names) are in the accepted tables below.
CASES = [
    Case("zero_byte", "empty.jpg", lambda: b"", "corrupt_file"),
    Case("truncated_jpeg", "cut.jpg", lambda: PHOTO[: len(PHOTO) // 3], "corrupt_file"),
    Case(
        "text_named_jpg_alone",
        "notes.jpg",
        lambda: b"just some text\n" * 10,
        "unsupported_media_type",
        with_good_photo=False,
    ),
    Case("gif_named_jpg_alone", "anim.jpg", _gif_named_jpg, "unsupported_media_type", with_good_photo=False),
    Case("heic_alone", "photo.jpg", lambda: HEIC, "unsupported_media_type", with_good_photo=False),
    Case("bmp_alone", "photo.bmp", _bmp, "unsupported_media_type", with_good_photo=False),
    Case("decompression_bomb", "bomb.png", lambda: png_claiming(30000, 30000), "image_too_large"),
    Case(
        "corrupt_jpeg_fixture_alone",
        "corrupt.jpg",
        lambda: fixture_bytes("faces", "corrupt.jpg"),
        "unsupported_media_type",
        with_good_photo=False,
    ),
    Case("trailing_newline_name", "x.jpg\n", lambda: PHOTO, "invalid_name"),
    Case("bell_in_name", "x\x07.jpg", lambda: PHOTO, "invalid_name"),
    Case("bidi_override_name", "photo\u202egpj.exe", lambda: PHOTO, "invalid_name"),
    Case("too_big_file", "huge.jpg", lambda: PHOTO + b"\0" * (3 * 1024 * 1024), "file_too_large"),
]
# Names only HTTP and gRPC can carry (a file system cannot hold them, or the CLI never sees them).
WIRE_ONLY = [
    Case("traversal", "../../etc/passwd.jpg", lambda: PHOTO, "invalid_name"),
    Case("absolute", "/etc/x.jpg", lambda: PHOTO, "invalid_name"),
    Case("backslash", "..\\x.jpg", lambda: PHOTO, "invalid_name"),
    Case("dot_dot", "..", lambda: PHOTO, "invalid_name"),
    Case("hidden_name", ".x.jpg", lambda: PHOTO, "invalid_name"),  # the CLI leaves hidden files out
    Case("nul_name", "x\x00.jpg", lambda: PHOTO, "invalid_name"),
    Case("lf_inside_name", "x\ny.jpg", lambda: PHOTO, "invalid_name"),
    Case("name_300_chars", "a" * 300 + ".jpg", lambda: PHOTO, "invalid_name"),
    Case("name_over_255_bytes", "\u0444" * 126 + ".jpg", lambda: PHOTO, "invalid_name"),
]
# A file in no accepted format next to a good photo: skipped with this reason, the photo kept.
SKIPPED = [
    Case(
        "text_named_jpg",
        "notes.jpg",
        lambda: b"just some text\n" * 10,
        "not a photo, video clip or voice file",
    ),
    Case("gif_named_jpg", "anim.jpg", _gif_named_jpg, "a GIF image, not an accepted format"),
    Case("heic_named_jpg", "photo.jpg", lambda: HEIC, "a HEIC photo, not an accepted format"),
    Case("heic", "IMG_0002.HEIC", lambda: HEIC, "a HEIC photo, not an accepted format"),
    Case("bmp", "scan.bmp", _bmp, "a BMP image, not an accepted format"),
    Case(
        "corrupt_jpeg_fixture",
        "corrupt.jpg",
        lambda: fixture_bytes("faces", "corrupt.jpg"),
        "not a photo, video clip or voice file",
    ),
]
# Stored as what the bytes are, under the name as sent (in NFC): (case, media type).
ACCEPTED = [
    (Case("png_named_jpg", "flat.jpg", lambda: _reencoded(".png"), "flat.jpg"), "image/png"),
    (Case("webp_named_jpg", "chat.jpg", lambda: _reencoded(".webp"), "chat.jpg"), "image/webp"),
    (Case("mp4_named_mov", "clip.mov", lambda: MP4, "clip.mov"), "video/mp4"),
    (Case("wav_named_mp3", "voice.mp3", lambda: WAV, "voice.mp3"), "audio/wav"),
    (Case("opus_voice_note", "voice note.opus", _opus, "voice note.opus"), "audio/ogg"),
    (Case("space_in_name", "IMG 0001.jpg", lambda: PHOTO, "IMG 0001.jpg"), "image/jpeg"),
    (Case("brackets_in_name", "photo(1).jpg", lambda: PHOTO, "photo(1).jpg"), "image/jpeg"),
    (Case("accent_nfc", "caf\u00e9.jpg", lambda: PHOTO, "caf\u00e9.jpg"), "image/jpeg"),
    (Case("accent_nfd", "cafe\u0301.jpg", lambda: PHOTO, "caf\u00e9.jpg"), "image/jpeg"),
    (
        Case("cyrillic", "\u0424\u043e\u0442\u043e.jpg", lambda: PHOTO, "\u0424\u043e\u0442\u043e.jpg"),
        "image/jpeg",
    ),
    (
        Case(
            "emoji",
            "\U0001f389 party \U0001f468\u200d\U0001f469\u200d\U0001f467.jpg",
            lambda: PHOTO,
            "\U0001f389 party \U0001f468\u200d\U0001f469\u200d\U0001f467.jpg",
        ),
        "image/jpeg",
    ),
    (Case("leading_dash_name", "-x.jpg", lambda: PHOTO, "-x.jpg"), "image/jpeg"),
    (Case("long_name", "a" * 200 + ".jpg", lambda: PHOTO, "a" * 200 + ".jpg"), "image/jpeg"),
    (Case("lookalike_letters", "ph\u043eto.jpg", lambda: PHOTO, "ph\u043eto.jpg"), "image/jpeg"),
    (Case("cmyk_jpeg", "cmyk.jpg", _webp_cmyk_jpeg, "cmyk.jpg"), "image/jpeg"),
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


def _declared(name: str) -> str:
    # What curl and browsers send: the type the name's suffix suggests.
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _post_http(reg: Registry, files: list[tuple[str, bytes]]) -> Any:
    body, content_type = multipart_body([("files", name, data, _declared(name)) for name, data in files])
    return reg.http.post(
        f"/v1/personas/{OTHER}/versions",
        content=body,
        headers={**reg.headers("build"), "content-type": content_type},
    )


def _http(reg: Registry, case: Case) -> str:
    r = _post_http(reg, _files(case))
    assert r.status_code >= 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["code"])


def _call_grpc(reg: Registry, files: list[tuple[str, bytes]]) -> pb.PersonaVersion:
    server, port = start_grpc_server(reg.service, 0)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = pb_grpc.PersonaRegistryStub(channel)
        upload = [pb.UploadFile(name=name, data=data, content_type=_declared(name)) for name, data in files]
        return stub.CreatePersonaVersion(
            pb.CreatePersonaVersionRequest(persona_id=OTHER, files=upload),
            metadata=(("x-api-key", reg.keys["build"]),),
        )
    finally:
        channel.close()
        server.stop(grace=None)


def _grpc(reg: Registry, case: Case) -> str:
    with pytest.raises(grpc.RpcError) as err:
        _call_grpc(reg, _files(case))
    return dict(err.value.trailing_metadata() or ())["error-code"]  # type: ignore[attr-defined]


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


def _folder(tmp_path: Path, files: list[tuple[str, bytes]]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in files:
        (folder / name).write_bytes(data)
    return folder


def _stored_inputs(reg: Registry, case: Case, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """What each door made of the upload: HTTP's and gRPC's stored version inputs, and the
    CLI's gate verdict on the folder (the step of `persona-core build` before it stores)."""
    files = _files(case)
    r = _post_http(reg, files)
    assert r.status_code == 202, r.text
    over_grpc = json.loads(_call_grpc(reg, files).inputs_json)
    cli = folder_upload(_folder(tmp_path, files), reg.settings).upload
    return {
        "http": r.json()["inputs"],
        "grpc": over_grpc,
        "cli": {
            "files": [{"name": f.name, "media_type": f.media_type, "kind": f.kind} for f in cli.files],
            "skipped": [s.model_dump(mode="json") for s in cli.skipped],
        },
    }


@pytest.mark.parametrize("case", SKIPPED, ids=lambda c: c.id)
def test_a_file_in_no_accepted_format_is_skipped_alike_by_every_door(
    reg: Registry, case: Case, tmp_path: Path
) -> None:
    """The good photo is stored; the other file is skipped with its reason, the same everywhere."""
    by_door = _stored_inputs(reg, case, tmp_path)
    for door, inputs in by_door.items():
        assert [f["name"] for f in inputs["files"]] == ["good.jpg"], door
        [skipped] = inputs["skipped"]
        assert (skipped["name"], skipped["code"]) == (case.name, "unsupported_media_type"), door
        assert case.code in skipped["reason"], (door, skipped["reason"])
    reasons = {door: inputs["skipped"][0]["reason"] for door, inputs in by_door.items()}
    assert len(set(reasons.values())) == 1, reasons


@pytest.mark.parametrize(("case", "media_type"), ACCEPTED, ids=lambda c: getattr(c, "id", ""))
def test_real_world_names_and_lying_suffixes_are_stored_as_their_bytes(
    reg: Registry, case: Case, media_type: str, tmp_path: Path
) -> None:
    """``case.code`` is the label each door keeps (the name in NFC); the media type is the bytes'."""
    for door, inputs in _stored_inputs(reg, case, tmp_path).items():
        stored = {f["name"]: f["media_type"] for f in inputs["files"]}
        assert stored == {"good.jpg": "image/jpeg", case.code: media_type}, door
        assert inputs["skipped"] == [], door
    assert case.code == unicodedata.normalize("NFC", case.code)


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
    r = _post_http(reg, [(name, make())])
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
    reg = make_registry(
        tmp_path / "reg",
        max_upload_file_bytes=defaults.max_upload_file_bytes,
        max_upload_files=defaults.max_upload_files,
        max_upload_total_bytes=defaults.max_upload_total_bytes,
    )
    try:
        huge = Case("photo_100_mb", "huge.jpg", lambda: PHOTO + b"\0" * (100 * 1024 * 1024), "file_too_large")
        env = {"PERSONA_MAX_UPLOAD_FILE_BYTES": str(defaults.max_upload_file_bytes)}
        verdicts = {"http": _http(reg, huge), "grpc": _grpc(reg, huge), "cli": _cli(reg, huge, tmp_path, env)}
        assert verdicts == dict.fromkeys(verdicts, "file_too_large")
        assert reg.meta.list_versions(OTHER) == []
    finally:
        reg.http.close()
        reg.meta.close()


# Bad requests rather than bad files: each door answers with the documented code, and the
# request stores nothing.
WRONG_KEY = "pk_0123456789abcdef_guessedsecret"


def test_a_flood_of_wrong_keys_is_throttled_alike_over_http_and_grpc(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "reg", auth_failure_limit=3)
    server, port = start_grpc_server(reg.service, 0)
    try:
        url = f"/v1/personas/{OTHER}"
        http = [reg.http.get(url, headers={"X-API-Key": WRONG_KEY}).json()["code"] for _ in range(4)]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.PersonaRegistryStub(channel)
            grpc_codes = []
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetPersona(
                        pb.GetPersonaRequest(persona_id=OTHER), metadata=(("x-api-key", WRONG_KEY),)
                    )
                grpc_codes.append(dict(err.value.trailing_metadata() or ())["error-code"])  # type: ignore[attr-defined]
        # HTTP and gRPC count apart here (TestClient's client is not 127.0.0.1): both throttle.
        expected = ["unauthenticated"] * 3 + ["too_many_auth_failures"]
        assert (http, grpc_codes) == (expected, expected)
    finally:
        server.stop(grace=None)
        reg.http.close()
        reg.meta.close()


@pytest.mark.parametrize(
    "query",
    ["", "?exp=1", "?sig=" + "a" * 64, "?exp=x&sig=" + "a" * 64],
    ids=["bare", "no_sig", "no_exp", "bad_exp"],
)
def test_a_blob_url_without_its_signature_is_bad_signature(reg: Registry, query: str) -> None:
    r = reg.http.get(f"/v1/blobs/{'0' * 64}{query}")
    assert (r.status_code, r.json()["code"]) == (403, "bad_signature")
