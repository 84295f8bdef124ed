"""Erasure and GC at size: erase a persona of 20 versions x 20 photos (each version with its
build outputs and a published pack) on the embedded default and on PostgreSQL + S3
(SeaweedFS), end to end (Dagster storage included when the pipeline's purger is installed);
GC over 10,000 blobs of which 10 % nothing holds, with the store read path a cache miss of
GET pack takes (published record + pack bytes) timed idle and during the GC, same run."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.common import percentiles, record
from persona_core.erasure import Purger, erase
from persona_core.publish import publish_pack
from persona_core.retention import collect_garbage
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.store.tracked import TrackedBlobStore
from persona_core.testing import make_pack

ROOT = Path(__file__).resolve().parent.parent
VERSIONS, PHOTOS = 20, 20
GC_BLOBS, GC_UNHELD_SHARE = 10_000, 0.10


def _services() -> Any:
    spec = importlib.util.spec_from_file_location("persona_test_services", ROOT / "tests" / "services.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/services.py not found")
    services = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = services
    spec.loader.exec_module(services)
    return services


def _persona(meta: MetadataStore, blobs: BlobStore, persona_id: str) -> None:
    """20 versions, each: 20 photos, a crop and a mask per photo, a published pack."""
    meta.create_persona(persona_id, {})
    for v in range(1, VERSIONS + 1):
        meta.create_version(persona_id, {"files": []})
        tracked = TrackedBlobStore(blobs, meta.refs, persona_id, v)
        for p in range(PHOTOS):
            seed = f"{persona_id}.{v}.{p}".encode()
            tracked.put(seed * 4000)  # the photo (~40 KB)
            tracked.put(seed * 600)  # its crop
            tracked.put(seed * 100)  # its mask
        publish_pack(meta, tracked, make_pack(tracked, persona_id, v, n_anchors=PHOTOS, seed=v))


def _purgers(settings: Settings) -> list[Purger]:
    try:
        from persona_pipeline.erasure import purger_for  # noqa: PLC0415 - the pipeline extra, when installed
    except ImportError:
        return []
    return [purger_for(settings)]


def _erase_timed(settings: Settings) -> tuple[float, int]:
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    try:
        _persona(meta, blobs, "bench-erase")
        held = len(meta.refs.held_by("bench-erase"))
        started = time.perf_counter()
        erase(meta, blobs, "bench-erase", actor="bench", reason="benchmark", purgers=_purgers(settings))
        return time.perf_counter() - started, held
    finally:
        meta.close()
        blobs.close()


def _settings_doc(settings: Settings) -> dict[str, Any]:
    doc = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            doc[name] = value.get_secret_value()
    return doc


def _reader(settings_doc: dict[str, Any], phase: Any, samples: Any) -> None:
    """Time GET pack's store reads (published record + pack bytes, a cache miss): 300 idle,
    then as many as fit while ``phase`` is set (the GC runs)."""
    settings = Settings(**{k: v for k, v in settings_doc.items() if v is not None})
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)

    def read_once() -> float:
        t0 = time.perf_counter()
        blobs.get(meta.get_published("bench-gc", 1).pack_ref)
        return time.perf_counter() - t0

    samples.put([read_once() for _ in range(300)])
    phase.wait(120)
    during = []
    while phase.is_set() or not during:
        during.append(read_once())
    samples.put(during)


def _gc_timed(settings: Settings) -> dict[str, Any]:
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    try:
        meta.create_persona("bench-gc", {})
        meta.create_version("bench-gc", {"files": []})
        publish_pack(meta, blobs, make_pack(blobs, "bench-gc", 1, n_anchors=6))
        tracked = TrackedBlobStore(blobs, meta.refs, "bench-gc", 1)
        unheld = int(GC_BLOBS * GC_UNHELD_SHARE)
        for i in range(GC_BLOBS):
            data = f"gc blob {i}".encode() * 32
            (blobs if i < unheld else tracked).put(data)

        # The registry reads from its own worker processes: the reader runs in another process.
        ctx = multiprocessing.get_context("spawn")
        phase, samples = ctx.Event(), ctx.Queue()
        reader = ctx.Process(target=_reader, args=(_settings_doc(settings), phase, samples))
        reader.start()
        idle = samples.get(timeout=120)  # the reader times 300 reads with nothing else running
        phase.set()
        started = time.perf_counter()
        report = collect_garbage(meta, blobs, retention_days=30, grace_s=0)
        seconds = time.perf_counter() - started
        phase.clear()
        during = samples.get(timeout=120)
        reader.join(30)
        idle_p99 = percentiles(idle, 1e3)["p99"]
        during_p99 = percentiles(during, 1e3)["p99"]
        return {"seconds": round(seconds, 2), "deleted": report.blobs_deleted, "idle_p99_ms": idle_p99,
                "during_p99_ms": during_p99, "ratio": round(during_p99 / max(idle_p99, 1e-6), 2)}
    finally:
        meta.close()
        blobs.close()


def main() -> None:
    values: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        embedded = Settings(home=Path(tmp) / "erase")
        seconds, held = _erase_timed(embedded)
        values |= {"erase_20x20_embedded_s": round(seconds, 2), "erase_20x20_refs": held}
        gc = _gc_timed(Settings(home=Path(tmp) / "gc"))
        values |= {f"gc_10k_embedded_{k}": v for k, v in gc.items()}
        if os.environ.get("PERSONA_BENCH_SKIP_SERVERS") != "1":
            services = _services()
            pg, s3 = services.postgres_service(), services.s3_service()
            try:
                server = s3.settings(s3.create_bucket(), home=Path(tmp) / "pg-s3")
                settings = server.model_copy(update={"database_url": pg.create_database()})
                seconds, _ = _erase_timed(settings)
                values["erase_20x20_postgres_s3_s"] = round(seconds, 2)
                gc_settings = s3.settings(s3.create_bucket(), home=Path(tmp) / "pg-s3-gc").model_copy(
                    update={"database_url": pg.create_database()})
                gc = _gc_timed(gc_settings)
                values |= {f"gc_10k_postgres_s3_{k}": v for k, v in gc.items()}
            finally:
                pg.stop()
                s3.stop()
    record("erasure", values)


if __name__ == "__main__":
    main()
