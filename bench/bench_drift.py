"""DriftMeter on 1280x720 frames against a pack built from the fixture photos.

``drift_measure_720p_ms_p50/_p99``: one ``measure`` call per frame (detect + align + embed +
background + flicker), after a warm-up. ``drift_measure_batch16_ms_per_frame``: ``measure_batch``
of 16 frames, divided by 16. ``drift_meter_load_ms``: in fresh processes, the pack already in
the disk cache, the time to make a DriftMeter (OpenCV + onnxruntime imports and model loads
included; the interpreter start and ``PackCache.load`` excluded), median of
``BENCH_DRIFT_PROCS`` processes (default 5). Goals on 2 cores: p50 <= 30 ms, batched <= 20 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from bench.common import percentiles, record
from persona_core.ingest import submit_version
from persona_core.runtime import DriftMeter, PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_pipeline.build import build_version
from persona_pipeline.steps.config import PipelineConfig

FACES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "faces"
PHOTOS = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg"]
N_SINGLE = 100
N_BATCH_ROUNDS = 6

_FRESH_LOAD = """
import json, sys, time
from persona_core.runtime import DriftMeter, PackCache, StorePackSource
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
s = Settings(home=sys.argv[1])
source = StorePackSource(open_metadata_store(s), open_blob_store(s))
pack = PackCache(sys.argv[2], source).load("bench-drift", 1)
t0 = time.perf_counter()
DriftMeter(pack, source)
print(json.dumps({"load": time.perf_counter() - t0}))
"""


def frame_720p(name: str, dx: int = 0) -> np.ndarray:
    """The photo scaled to 720 px high on a 1280x720 canvas (a talking-head render's framing)."""
    photo = cv2.imread(str(FACES / name))
    h, w = photo.shape[:2]
    scaled = cv2.resize(photo, (round(w * 720 / h), 720), interpolation=cv2.INTER_AREA)
    canvas = np.full((720, 1280, 3), 40, np.uint8)
    x0 = max(0, (1280 - scaled.shape[1]) // 2 + dx)
    part = scaled[:, : 1280 - x0]
    canvas[:, x0 : x0 + part.shape[1]] = part
    return canvas


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        meta, blobs = open_metadata_store(settings), open_blob_store(settings)
        meta.create_persona("bench-drift", {})
        files = [(n, (FACES / n).read_bytes(), "image") for n in PHOTOS]
        version = submit_version(meta, blobs, "bench-drift", files).version
        with dg.instance_for_test() as instance:
            result = build_version("bench-drift", version, settings, instance,
                                   config=PipelineConfig(required_modes=()))
        if result.status.value != "published":
            raise RuntimeError(f"bench pack not published: {result.record.reasons} {result.errors}")
        source = StorePackSource(meta, blobs)
        cache_dir = Path(tmp) / "cache"
        pack = PackCache(cache_dir, source).load("bench-drift", version)
        meter = DriftMeter(pack, source)
        frames = [frame_720p(PHOTOS[i % len(PHOTOS)], dx=(i % 5) * 3) for i in range(16)]
        for frame in frames[:4]:
            meter.measure(frame)  # warm-up: sessions, anchor backgrounds
        single = []
        for i in range(N_SINGLE):
            t0 = time.perf_counter()
            meter.measure(frames[i % len(frames)])
            single.append(time.perf_counter() - t0)
        batch = []
        for _ in range(N_BATCH_ROUNDS):
            t0 = time.perf_counter()
            meter.measure_batch(frames)
            batch.append((time.perf_counter() - t0) / len(frames))
        loads = []
        for _ in range(int(os.environ.get("BENCH_DRIFT_PROCS", "5"))):
            out = subprocess.run([sys.executable, "-c", _FRESH_LOAD, str(settings.home), str(cache_dir)],
                                 capture_output=True, text=True, check=True, timeout=300)
            loads.append(json.loads(out.stdout.strip().splitlines()[-1])["load"])
    single_ms = percentiles(single, 1e3)
    record("drift", {
        "drift_measure_720p_ms_p50": single_ms["p50"],
        "drift_measure_720p_ms_p99": single_ms["p99"],
        "drift_measure_batch16_ms_per_frame": round(float(np.median(batch)) * 1e3, 3),
        "drift_meter_load_ms": round(float(np.median(loads)) * 1e3, 1),
        "drift_providers": ",".join(meter.embedder.providers),
    })


if __name__ == "__main__":
    main()
