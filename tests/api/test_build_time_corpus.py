"""The bad-input corpus, part two: files that pass the upload gate and get their verdict in the
build (silent / 1-ms / 8-kHz / 96-kHz stereo WAV, a corrupt MP4, a video without a face, an
EXIF-rotated photo), plus a manifest that is not JSON. The same set goes in through HTTP,
gRPC and the CLI; each build must reach the same status and reject the same files for the
same reasons, and the rotated photo must be read upright."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image
from registry_support import FIXTURES, OTHER, Registry, make_registry
from typer.testing import CliRunner

from persona_cli.main import app as cli_app
from persona_core.pack import PersonaPack
from persona_core.refs import sha256_hex
from persona_core.settings import Settings
from persona_core.vision.registry import default_model
from persona_pipeline.build import build_version
from persona_pipeline.demo import summarize
from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.grpc_server import start_grpc_server

pytestmark = [pytest.mark.models, pytest.mark.dagster, pytest.mark.slow]
FACES, VOICES = FIXTURES / "faces", FIXTURES / "voices"


def _wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def _speech(name: str) -> tuple[np.ndarray, int]:
    with wave.open(str(VOICES / name)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def _resampled(name: str, rate: int, channels: int) -> bytes:
    samples, src = _speech(name)
    t = np.arange(int(len(samples) * rate / src)) * (src / rate)
    out = np.interp(t, np.arange(len(samples)), samples.astype(np.float64))
    return _wav(np.repeat(out, channels) if channels > 1 else out, rate, channels)


def _exif_rotated(name: str) -> bytes:
    """The photo's pixels turned a quarter left, with EXIF orientation 6 ("turn right to view")."""
    img = Image.open(FACES / name).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def _video(frames: list[np.ndarray], path: Path) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for frame in frames:
        for _ in range(10):
            writer.write(frame)
    writer.release()
    return path.read_bytes()


def _inputs(tmp: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    wall = np.full((360, 480, 3), (90, 120, 150), np.uint8)
    cv2.putText(wall, "no one here", (60, 180), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (20, 20, 20), 3)
    files = {
        "obama.jpg": (FACES / "obama.jpg").read_bytes(),
        "obama1.jpg": (FACES / "obama1.jpg").read_bytes(),
        "rotated.jpg": _exif_rotated("obama2.jpg"),
        "obama3.jpg": (FACES / "obama3.jpg").read_bytes(),
        "speech.wav": (VOICES / "a1.wav").read_bytes(),
        "speech_8k.wav": _resampled("a2.wav", 8000, 1),
        "stereo_96k.wav": _resampled("a1.wav", 96000, 2),
        "silent.wav": _wav(np.zeros(16000 * 2), 16000),
        "one_ms.wav": _wav(np.full(16, 1000), 16000),
        "broken.mp4": b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 400,
        "wall.avi": _video([wall, cv2.GaussianBlur(wall, (5, 5), 0)], tmp / "wall.avi"),
    }
    modes = {"obama.jpg": "A_SELFIE", "obama1.jpg": "A_SELFIE", "rotated.jpg": "A_SELFIE",
             "obama3.jpg": "C_CUTAWAY"}
    return files, modes


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = make_registry(tmp_path_factory.mktemp("reg"), max_upload_files=16,
                      max_upload_total_bytes=64 * 1024 * 1024, max_upload_file_bytes=32 * 1024 * 1024)
    yield r
    r.http.close()
    r.meta.close()


def _http(reg: Registry, files: dict[str, bytes], manifest: str) -> Any:
    parts = [("files", (n, d, "application/octet-stream")) for n, d in files.items()]
    return reg.http.post(f"/v1/personas/{OTHER}/versions", files=parts, data={"manifest": manifest},
                         headers=reg.headers("build"))


def _grpc(reg: Registry, persona: str, files: dict[str, bytes], manifest: str) -> Any:
    server, port = start_grpc_server(reg.service, 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            return pb_grpc.PersonaRegistryStub(channel).CreatePersonaVersion(
                pb.CreatePersonaVersionRequest(
                    persona_id=persona,
                    files=[pb.UploadFile(name=n, data=d) for n, d in files.items()],
                    manifest_json=manifest,
                ),
                metadata=(("x-api-key", reg.keys["admin"]),),
            )
    finally:
        server.stop(grace=None)


def _cli(reg: Registry, persona: str, files: dict[str, bytes], modes: dict[str, str], folder: Path,
         behavior: str | None = None) -> Any:
    for name, data in files.items():
        where = folder / modes[name] if name in modes else folder
        where.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(data)
    if behavior is not None:
        (folder / "behavior.json").write_text(behavior)
    env = {"PERSONA_MAX_UPLOAD_FILES": "16", "PERSONA_MAX_UPLOAD_FILE_BYTES": str(32 * 1024 * 1024),
           "PERSONA_MAX_UPLOAD_TOTAL_BYTES": str(64 * 1024 * 1024)}
    return CliRunner().invoke(
        cli_app, ["--home", str(reg.settings.home), "--json", "build", str(folder), "--persona", persona],
        env=env,
    )


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """What a user reads off a build: its status, which files it refused and why, anchors per mode."""
    return {
        "status": summary["status"],
        "rejected": {r["name"]: r["reason"] for r in summary["rejected"]},
        "anchors_per_mode": summary["anchors_per_mode"],
    }


def _build(reg: Registry, persona: str, version: int) -> dict[str, Any]:
    result = build_version(persona, version, Settings(home=reg.settings.home))
    return summarize(result, 0.0)


def test_build_time_verdicts_are_the_same_through_every_door(reg: Registry, tmp_path: Path) -> None:
    files, modes = _inputs(tmp_path)
    manifest = json.dumps({"files": {n: {"camera_mode": m} for n, m in modes.items()}})
    r = _http(reg, files, manifest)
    assert r.status_code == 202, r.text
    http = _verdict(_build(reg, OTHER, r.json()["version"]))
    reg.meta.create_persona("carol", {})
    reply = _grpc(reg, "carol", files, manifest)
    over_grpc = _verdict(_build(reg, "carol", reply.version))
    result = _cli(reg, "dave", files, modes, tmp_path / "in")
    assert result.exit_code == 0, result.stdout[-2000:]
    cli = _verdict(json.loads(result.stdout))

    assert http == over_grpc == cli
    assert http["status"] == "published"
    rejected = http["rejected"]
    assert rejected["silent.wav"] == "audio is silent"
    assert rejected["one_ms.wav"] == "audio shorter than 0.5 s"
    assert rejected["broken.mp4"].startswith("video unreadable")
    assert rejected["wall.avi@0.00s"] == "no face found"  # the faceless clip's frames, each named
    # Odd but valid audio and an EXIF-rotated photo are used, not refused.
    assert not {"speech_8k.wav", "stereo_96k.wav", "rotated.jpg", "speech.wav"} & set(rejected)
    _assert_rotated_anchor_is_upright(reg, OTHER, r.json()["version"], files["rotated.jpg"])


def _assert_rotated_anchor_is_upright(reg: Registry, persona: str, version: int, data: bytes) -> None:
    """The anchor's crop box (source-image pixels) holds the face where it is in the upright
    photo: the build read the EXIF orientation, not the pixels as stored on their side."""
    published = reg.meta.get_published(persona, version)
    pack = PersonaPack.model_validate_json(reg.blobs.get(published.pack_ref))
    digest = sha256_hex(data)
    [anchor] = [a for items in pack.anchor_sets.values() for a in items if a.source_sha256 == digest]
    x, y, w, h = anchor.metadata.crop_box
    [face] = default_model("detect").detect(cv2.imread(str(FACES / "obama2.jpg")))
    fx, fy, fw, fh = face.bbox
    cx, cy = fx + fw / 2, fy + fh / 2
    assert x <= cx <= x + w, (anchor.metadata.crop_box, face.bbox)
    assert y <= cy <= y + h, (anchor.metadata.crop_box, face.bbox)
    assert abs(anchor.metadata.head_pose.roll) < 30


def test_a_manifest_that_is_not_json_is_refused_the_same_everywhere(reg: Registry, tmp_path: Path) -> None:
    files = {"obama.jpg": (FACES / "obama.jpg").read_bytes()}
    before = reg.meta.list_versions(OTHER)
    r = _http(reg, files, "{not json")
    with pytest.raises(grpc.RpcError) as err:
        _grpc(reg, OTHER, files, "{not json")
    result = _cli(reg, "erin", files, {}, tmp_path / "in", behavior="{not json")
    codes = {
        "http": r.json()["code"],
        "grpc": dict(err.value.trailing_metadata() or ())["error-code"],  # type: ignore[attr-defined]
        "cli": json.loads(result.stdout)["error"]["code"],
    }
    assert codes == dict.fromkeys(codes, "invalid_manifest")
    assert (r.status_code, result.exit_code) == (422, 2)
    assert reg.meta.list_versions(OTHER) == before
    assert "erin" not in {p.persona_id for p in reg.meta.list_personas()}
