"""Acceptance for intake: the folder people really have builds to the same verdict through
HTTP, gRPC and the CLI. Photos saved by a messenger as WebP and exported as PNG under ``.jpg``
names, ``IMG 0001.jpg``, ``photo(1).jpg``, accented, Cyrillic and emoji names, two cameras'
``IMG_0001.JPG`` in two sub-folders, and a BMP scan: every door publishes the pack and lists
the BMP as skipped with the same reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import pytest
from registry_support import FIXTURES, OTHER, Registry, make_registry, multipart_body
from typer.testing import CliRunner

from persona_cli.main import app as cli_app
from persona_core.settings import Settings
from persona_pipeline.build import build_version
from persona_pipeline.demo import summarize
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server

pytestmark = [pytest.mark.models, pytest.mark.dagster, pytest.mark.slow]
FACES = FIXTURES / "faces"
LIMITS = {
    "max_upload_files": 16,
    "max_upload_file_bytes": 8 * 1024 * 1024,
    "max_upload_total_bytes": 64 * 1024 * 1024,
}


def _encoded(fixture: str, ext: str, *params: int, scale: float = 1.0) -> bytes:
    img = cv2.imread(str(FACES / fixture))
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return bytes(buf)


def _folder_files() -> list[tuple[str, str, bytes]]:
    """(sub-folder, name, bytes): what a phone export, a messenger and two cameras leave."""
    return [
        ("", "chat.jpg", _encoded("obama1.jpg", ".webp", cv2.IMWRITE_WEBP_QUALITY, 90)),
        ("", "flat.jpg", _encoded("obama2.jpg", ".png")),
        ("", "IMG 0001.jpg", (FACES / "obama.jpg").read_bytes()),
        ("", "photo(1).jpg", (FACES / "obama3.jpg").read_bytes()),
        ("", "caf\u00e9.jpg", _encoded("obama.jpg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, 88)),
        (
            "",
            "\u0424\u043e\u0442\u043e.jpg",
            _encoded("obama1.jpg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, 85, scale=0.9),
        ),
        (
            "",
            "\U0001f389 party.jpg",
            _encoded("obama2.jpg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90, scale=0.95),
        ),
        ("cam1", "IMG_0001.JPG", _encoded("obama.jpg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, 80, scale=0.85)),
        ("cam2", "IMG_0001.JPG", _encoded("obama1.jpg", ".jpg", cv2.IMWRITE_JPEG_QUALITY, 80, scale=0.8)),
        ("", "scan.bmp", _encoded("obama.jpg", ".bmp")),
    ]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = make_registry(tmp_path_factory.mktemp("reg"), **LIMITS)
    yield r
    r.http.close()
    r.meta.close()


def _declared(name: str) -> str:
    return {".jpg": "image/jpeg", ".JPG": "image/jpeg", ".bmp": "image/bmp"}[Path(name).suffix]


def _verdict(summary: dict[str, Any], skipped: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": summary["status"],
        "rejected": {r["name"]: r["reason"] for r in summary["rejected"]},
        "anchors_per_mode": summary["anchors_per_mode"],
        "skipped": [(s["name"], s["code"], s["reason"]) for s in skipped],
    }


def _build(reg: Registry, persona: str, version: int) -> dict[str, Any]:
    return summarize(build_version(persona, version, Settings(home=reg.settings.home)), 0.0)


def _over_http(reg: Registry, files: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    # Names as curl and browsers send them, with the type they guess from the name.
    body, content_type = multipart_body([("files", name, data, _declared(name)) for _, name, data in files])
    r = reg.http.post(
        f"/v1/personas/{OTHER}/versions",
        content=body,
        headers={**reg.headers("build"), "content-type": content_type},
    )
    assert r.status_code == 202, r.text
    inputs = r.json()["inputs"]
    return _verdict(_build(reg, OTHER, r.json()["version"]), inputs["skipped"]) | {
        "stored": sorted(f["name"] for f in inputs["files"])
    }


def _over_grpc(reg: Registry, files: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    reg.meta.create_persona("carol", {})
    server, port = start_grpc_server(reg.service, 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = pb_grpc.PersonaRegistryStub(channel).CreatePersonaVersion(
                pb.CreatePersonaVersionRequest(
                    persona_id="carol",
                    files=[pb.UploadFile(name=n, data=d, content_type=_declared(n)) for _, n, d in files],
                ),
                metadata=(("x-api-key", reg.keys["admin"]),),
            )
    finally:
        server.stop(grace=None)
    inputs = json.loads(reply.inputs_json)
    return _verdict(_build(reg, "carol", reply.version), inputs["skipped"]) | {
        "stored": sorted(f["name"] for f in inputs["files"])
    }


def _over_cli(reg: Registry, files: list[tuple[str, str, bytes]], folder: Path) -> dict[str, Any]:
    for sub, name, data in files:
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / name).write_bytes(data)
    env = {
        "PERSONA_MAX_UPLOAD_FILES": str(LIMITS["max_upload_files"]),
        "PERSONA_MAX_UPLOAD_FILE_BYTES": str(LIMITS["max_upload_file_bytes"]),
        "PERSONA_MAX_UPLOAD_TOTAL_BYTES": str(LIMITS["max_upload_total_bytes"]),
    }
    result = CliRunner().invoke(
        cli_app,
        ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", "dave"],
        env=env,
    )
    assert result.exit_code == 0, result.stdout[-3000:]
    summary = json.loads(result.stdout)
    stored = reg.meta.get_version("dave", summary["version"]).inputs["files"]
    return _verdict(summary, summary["skipped_files"]) | {"stored": sorted(f["name"] for f in stored)}


def test_a_real_world_folder_builds_to_the_same_verdict_through_every_door(
    reg: Registry, tmp_path: Path
) -> None:
    files = _folder_files()
    verdicts = {
        "http": _over_http(reg, files),
        "grpc": _over_grpc(reg, files),
        "cli": _over_cli(reg, files, tmp_path / "export"),
    }
    assert verdicts["http"] == verdicts["grpc"] == verdicts["cli"], json.dumps(verdicts, indent=1)
    verdict = verdicts["http"]
    assert verdict["status"] == "published"
    assert verdict["stored"] == sorted(
        [
            "chat.jpg",
            "flat.jpg",
            "IMG 0001.jpg",
            "photo(1).jpg",
            "caf\u00e9.jpg",
            "\u0424\u043e\u0442\u043e.jpg",
            "\U0001f389 party.jpg",
            "IMG_0001.JPG",
            "IMG_0001 (2).JPG",
        ]
    )
    [(name, code, reason)] = verdict["skipped"]
    assert (name, code) == ("scan.bmp", "unsupported_media_type")
    assert reason.startswith("a BMP image, not an accepted format")
    # The mislabelled WebP and PNG were read as what they are, and their pixels used.
    stored = {f["name"]: f["media_type"] for f in reg.meta.get_version("dave", 1).inputs["files"]}
    assert (stored["chat.jpg"], stored["flat.jpg"]) == ("image/webp", "image/png")
    assert not {"chat.jpg", "flat.jpg"} & set(verdict["rejected"])
