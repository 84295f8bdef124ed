"""The reference ceiling for bench_api: a bare FastAPI route returning the same cached pack
bytes (no auth, no lookup), served by the same uvicorn options. Path of the bytes in
``BENCH_BARE_PACK_FILE``."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Response


def app() -> FastAPI:
    body = Path(os.environ["BENCH_BARE_PACK_FILE"]).read_bytes()
    bare = FastAPI()

    @bare.get("/v1/personas/{persona_id}/versions/{version}/pack")
    async def pack(persona_id: str, version: str) -> Response:
        return Response(body, media_type="application/json")

    @bare.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return bare
