"""Uploads: good ones become pending versions with a build manifest; bad ones are refused
with a 4xx problem and a clear code, and nothing stored changes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from registry_support import PUBLISHED, Registry, fixture_bytes, make_registry, png_claiming

from persona_core.ingest import read_manifest

JPEG = fixture_bytes("faces", "obama1.jpg")
JPEG2 = fixture_bytes("faces", "biden2.jpg")
WAV = fixture_bytes("voices", "a1.wav")


def _avi() -> bytes:
    """A real 1 s MJPG clip of a fixture face."""
    frame = cv2.resize(cv2.imdecode(np.frombuffer(JPEG, np.uint8), cv2.IMREAD_COLOR), (160, 200))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 200))
        for _ in range(10):
            writer.write(frame)
        writer.release()
        return path.read_bytes()


AVI = _avi()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # PNG magic, no image behind it
URL = f"/v1/personas/{PUBLISHED}/versions"


def _state(reg: Registry) -> dict[str, Any]:
    """Everything a failed upload must leave alone: metadata rows and every stored file."""
    personas = reg.meta.list_personas(limit=1000)
    files = sorted(
        str(Path(d, f).relative_to(reg.blobs.root)) for d, _, fs in os.walk(reg.blobs.root) for f in fs
    )
    return {
        "personas": [(p.persona_id, p.metadata) for p in personas],
        "versions": {p.persona_id: reg.meta.list_versions(p.persona_id) for p in personas},
        "files": files,
    }


def _post(reg: Registry, files: list[Any], **kw: Any) -> Any:
    return reg.http.post(kw.pop("url", URL), files=files, headers=reg.headers("build"), **kw)


def test_upload_creates_a_pending_version_and_its_build_manifest(registry: Registry) -> None:
    """202 with the new version and its status URL; the manifest the sensor watches names
    every file with its sniffed kind and camera-mode tag, and the behaviour config."""
    manifest = {
        "files": {"front.jpg": {"camera_mode": "A_SELFIE"}},
        "behavior": {
            "persona_card": "calm",
            "emotion_ranges": {"happy": {"min": 0, "max": 0.5}},
            "allowed_gestures": ["nod"],
        },
    }
    response = _post(
        registry,
        [
            ("files", ("front.jpg", JPEG, "image/jpeg")),
            ("images", ("side.jpg", JPEG2, "application/octet-stream")),
            ("voices", ("hello.wav", WAV, "audio/x-wav")),
            ("videos", ("walk.avi", AVI, "video/x-msvideo")),
        ],
        data={"manifest": json.dumps(manifest)},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["version"] == 3  # v1 published, v2 pending in the fixture
    assert body["status"] == "pending"
    assert body["status_url"] == f"{URL}/3"
    assert response.headers["location"] == f"{URL}/3"
    assert (
        registry.http.get(body["status_url"], headers=registry.headers("read")).json()["status"] == "pending"
    )

    keys = registry.blobs.list_objects("manifests/")
    assert len(keys) == 1
    written = read_manifest(registry.blobs, keys[0])
    assert (written.persona_id, written.version) == (PUBLISHED, 3)
    kinds = {f.name: (f.kind, f.camera_mode) for f in written.inputs.files}
    assert kinds == {
        "front.jpg": ("image", "A_SELFIE"),
        "side.jpg": ("image", None),
        "hello.wav": ("voice", None),
        "walk.avi": ("video", None),
    }
    assert written.inputs.behavior_policy is not None
    assert written.inputs.behavior_policy.persona_card == "calm"
    for f in written.inputs.files:
        assert registry.blobs.exists(f.ref)


def _big(n: int) -> bytes:
    return b"\xff\xd8\xff" + b"\x00" * n


TRUNCATED_JPEG = JPEG[:2000]
BAD_UPLOADS = [
    (
        "text_named_jpg",
        [("files", ("corrupt.jpg", fixture_bytes("faces", "corrupt.jpg"), "image/jpeg"))],
        {},
        415,
        "unsupported_media_type",
    ),
    ("truncated_jpeg", [("files", ("cut.jpg", TRUNCATED_JPEG, "image/jpeg"))], {}, 422, "corrupt_file"),
    ("png_magic_only", [("files", ("x.png", PNG, "image/png"))], {}, 422, "corrupt_file"),
    (
        "png_header_claims_900_megapixels",
        [("files", ("bomb.png", png_claiming(30000, 30000), "image/png"))],
        {},
        413,
        "image_too_large",
    ),
    (
        "png_header_claims_48_megapixels",
        [("images", ("big.png", png_claiming(8000, 6000), "image/png"))],
        {},
        413,
        "image_too_large",
    ),
    (
        "executable",
        [("files", ("run.jpg", b"MZ\x90\x00" + b"\x00" * 100, "image/jpeg"))],
        {},
        415,
        "unsupported_media_type",
    ),
    ("empty_file", [("files", ("e.jpg", b"", "image/jpeg"))], {}, 422, "corrupt_file"),
    (
        "file_too_large",
        [("files", ("big.jpg", _big(2 * 1024 * 1024 + 1), "image/jpeg"))],
        {},
        413,
        "file_too_large",
    ),
    (
        "too_many_files",
        [("files", (f"f{i}.jpg", JPEG, "image/jpeg")) for i in range(5)],
        {},
        413,
        "too_many_files",
    ),
    ("dotdot_name", [("files", ("../../etc/passwd.jpg", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("folder_name", [("files", ("sub/evil.jpg", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("backslash_name", [("files", ("..\\evil.jpg", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("absolute_name", [("files", ("/tmp/evil.jpg", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("hidden_name", [("files", (".bashrc", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("bidi_override", [("files", ("photo\u202egpj.exe", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    ("dot_dot", [("files", ("..", JPEG, "image/jpeg"))], {}, 400, "invalid_name"),
    (
        "only_unsupported_files",
        [
            ("files", ("a.bmp", b"BM" + b"\x00" * 64, "image/bmp")),
            ("files", ("b.txt", b"hello", "text/plain")),
        ],
        {},
        415,
        "unsupported_media_type",
    ),
    ("no_files", [("manifest", (None, b"{}", "application/json"))], {}, 400, "no_files"),
    ("unknown_field", [("photos", ("a.jpg", JPEG, "image/jpeg"))], {}, 400, "invalid_upload"),
    (
        "manifest_not_json",
        [("files", ("a.jpg", JPEG, "image/jpeg"))],
        {"data": {"manifest": "{nope"}},
        422,
        "invalid_manifest",
    ),
    (
        "manifest_names_missing_file",
        [("files", ("a.jpg", JPEG, "image/jpeg"))],
        {"data": {"manifest": json.dumps({"files": {"b.jpg": {"camera_mode": "A_SELFIE"}}})}},
        422,
        "invalid_manifest",
    ),
    (
        "manifest_bad_camera_mode",
        [("files", ("a.jpg", JPEG, "image/jpeg"))],
        {"data": {"manifest": json.dumps({"files": {"a.jpg": {"camera_mode": "Z_DRONE"}}})}},
        422,
        "invalid_manifest",
    ),
    (
        "good_then_bad",
        [("files", ("a.jpg", JPEG, "image/jpeg")), ("files", ("b.jpg", TRUNCATED_JPEG, "image/jpeg"))],
        {},
        422,
        "corrupt_file",
    ),
    (
        "unknown_persona",
        [("files", ("a.jpg", JPEG, "image/jpeg"))],
        {"url": "/v1/personas/nobody/versions"},
        404,
        "persona_not_found",
    ),
]


@pytest.mark.parametrize(
    ("files", "extra", "status", "code"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_upload_is_refused_and_nothing_changes(
    registry: Registry, files: list[Any], extra: dict[str, Any], status: int, code: str
) -> None:
    """Each bad upload gets its own 4xx and stable code; rows and stored files are as before."""
    before = _state(registry)
    response = _post(registry, files, **dict(extra))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert _state(registry) == before


def test_body_over_the_request_cap_is_refused_before_parsing(registry: Registry) -> None:
    """A body larger than all limits together is refused as request_too_large (413)."""
    before = _state(registry)
    files = [("files", (f"f{i}.jpg", _big(1_900_000), "image/jpeg")) for i in range(4)]
    response = _post(registry, files)
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert _state(registry) == before


def test_non_multipart_body_is_refused(registry: Registry) -> None:
    response = registry.http.post(URL, json={"files": []}, headers=registry.headers("build"))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_upload"


def test_image_pixel_limit_is_configurable(tmp_path: Path) -> None:
    """PERSONA_MAX_IMAGE_PIXELS bounds real photos too: over it, 413 image_too_large, nothing stored."""
    reg = make_registry(tmp_path, max_image_pixels=10_000)
    try:
        before = _state(reg)
        response = _post(reg, [("files", ("front.jpg", JPEG, "image/jpeg"))])
        assert (response.status_code, response.json()["code"]) == (413, "image_too_large")
        assert "10000 pixels" in response.json()["detail"]
        assert _state(reg) == before
    finally:
        reg.http.close()
        reg.meta.close()


def test_what_a_file_is_comes_from_its_bytes_and_a_lying_label_is_only_noted(registry: Registry) -> None:
    """A JPEG declared as PNG, a WAV sent in the ``images`` field, an MP4 named ``.mov``: each is
    stored as what its bytes are, and the version's inputs say what the labels claimed."""
    mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 400
    response = _post(registry, [
        ("files", ("a.jpg", JPEG, "image/png")),
        ("images", ("hello.wav", WAV, "application/octet-stream")),
        ("files", ("clip.mov", mp4, "video/quicktime")),
    ])
    assert response.status_code == 202, response.text
    inputs = response.json()["inputs"]
    assert {f["name"]: (f["kind"], f["media_type"]) for f in inputs["files"]} == {
        "a.jpg": ("image", "image/jpeg"),
        "hello.wav": ("voice", "audio/wav"),
        "clip.mov": ("video", "video/mp4"),
    }
    assert inputs["skipped"] == []
    assert inputs["notes"] == [
        "a.jpg: read as image/jpeg, what its bytes are (it was declared image/png)",
        "hello.wav: read as audio/wav, what its bytes are (it was sent as 'images')",
        "clip.mov: read as video/mp4, what its bytes are (its name says video/quicktime)",
    ]


def test_two_files_with_one_name_are_both_kept(registry: Registry) -> None:
    """Two cameras' ``IMG_0001.JPG``: the second is stored as ``IMG_0001 (2).JPG``, with a note."""
    response = _post(registry, [
        ("files", ("IMG_0001.JPG", JPEG, "image/jpeg")),
        ("files", ("IMG_0001.JPG", JPEG2, "image/jpeg")),
    ])
    assert response.status_code == 202, response.text
    inputs = response.json()["inputs"]
    assert [f["name"] for f in inputs["files"]] == ["IMG_0001.JPG", "IMG_0001 (2).JPG"]
    assert inputs["notes"] == [
        "IMG_0001.JPG: kept as 'IMG_0001 (2).JPG', another file is named 'IMG_0001.JPG'"
    ]
