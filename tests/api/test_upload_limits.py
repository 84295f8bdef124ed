"""An upload's memory in a registry worker: files stay spooled and are read one at a time, and a
worker takes at most ``PERSONA_MAX_CONCURRENT_UPLOADS`` uploads at once; one more is refused
at once, 503 ``uploads_busy`` with ``Retry-After`` (gRPC: UNAVAILABLE, the same code), before
its body is read."""

from __future__ import annotations

import socket
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from registry_support import OTHER, Registry, fixture_bytes, make_registry, multipart_body

from registry_api.grpc_gen import persona_registry_pb2 as pb
from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc
from registry_api.server import BackgroundServer

MIB = 1024 * 1024
PHOTO = fixture_bytes("faces", "obama.jpg")
URL = f"/v1/personas/{OTHER}/versions"


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    r = make_registry(
        tmp_path / "reg",
        max_concurrent_uploads=1,
        max_upload_files=8,
        max_upload_file_bytes=16 * MIB,
        max_upload_total_bytes=64 * MIB,
    )
    yield r
    r.http.close()
    r.meta.close()


def _slow_upload(port: int, key: str) -> socket.socket:
    """An upload whose body has begun to arrive and is not finished: it holds a slot."""
    body, content_type = multipart_body([("files", "a.jpg", PHOTO, "image/jpeg")])
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[: len(body) // 2])
    return sock


def test_an_upload_past_the_workers_bound_is_refused_at_once_with_retry_after(reg: Registry) -> None:
    with BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs) as server:
        body, content_type = multipart_body([("files", "b.jpg", PHOTO, "image/jpeg")])
        headers = {"X-API-Key": reg.keys["build"], "content-type": content_type}
        holder = _slow_upload(server.port, reg.keys["build"])
        try:
            deadline = time.monotonic() + 10
            while True:  # until the server has taken the slow upload's slot
                r = httpx.post(server.base_url + URL, content=body, headers=headers, timeout=10)
                if r.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "uploads_busy"
            assert r.headers["retry-after"].isdigit()
            with grpc.insecure_channel(server.grpc_target) as channel, pytest.raises(grpc.RpcError) as err:
                pb_grpc.PersonaRegistryStub(channel).CreatePersonaVersion(
                    pb.CreatePersonaVersionRequest(
                        persona_id=OTHER, files=[pb.UploadFile(name="c.jpg", data=PHOTO)]
                    ),
                    metadata=(("x-api-key", reg.keys["build"]),),
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert dict(err.value.trailing_metadata() or ())["error-code"] == "uploads_busy"  # type: ignore[attr-defined]
        finally:
            holder.close()
        # The slot comes back when the slow client goes: the next upload is taken.
        deadline = time.monotonic() + 10
        while (
            r := httpx.post(server.base_url + URL, content=body, headers=headers, timeout=10)
        ).status_code == 503:
            assert time.monotonic() < deadline, "the slot never came back"
            time.sleep(0.05)
        assert r.status_code == 202, r.text
        assert [v.version for v in reg.meta.list_versions(OTHER)] == [1]


def _wav(n_bytes: int) -> bytes:
    """A WAV header in front of ``n_bytes`` of silence (the gate sniffs audio; the build decodes it)."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    data = b"data" + struct.pack("<I", n_bytes) + b"\0" * n_bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_an_upload_is_never_held_whole_in_the_workers_memory(reg: Registry, tmp_path: Path) -> None:
    """Four 8 MiB voice files over real HTTP: the worker's Python allocations peak near one
    file's size (read, stored, dropped), not the upload's 32 MiB."""
    parts = [("voices", f"v{i}.wav", _wav(8 * MIB - 64) + bytes([i]), "audio/wav") for i in range(4)]
    body, content_type = multipart_body(parts)
    upload = tmp_path / "body"
    upload.write_bytes(body)
    del body, parts
    with BackgroundServer(reg.settings, metadata=reg.meta, blobs=reg.blobs, with_grpc=False) as server:
        tracemalloc.start()
        try:
            with upload.open("rb") as fh:  # streamed from disk: the client holds none of it
                r = httpx.post(
                    server.base_url + URL,
                    content=fh,
                    headers={"X-API-Key": reg.keys["build"], "content-type": content_type},
                    timeout=60,
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert r.status_code == 202, r.text
    assert len(r.json()["inputs"]["files"]) == 4
    assert peak < 26 * MIB, f"peak {peak / MIB:.1f} MiB of Python allocations for a 32 MiB upload"
