"""Serving under abusive clients, each side by side with its idle baseline in one run:

- ``serving_slow_clients_*``: a real ``persona-core serve`` (default workers and limits) while
  1,000 clients each send half a request header and then a line a second. GET pack p50 during
  vs idle (goal <= 1.5 x), failed normal requests (goal 0), and how long the server took to
  cut the slow clients (goal: within ``PERSONA_HTTP_HEADER_TIMEOUT_S``, 10 s, plus a second).
- ``grpc_pack_p99_*``: GetPersonaPack p99 on the same server's gRPC port while 10 clients
  each upload four ~4 MB photos at once, vs idle (goal <= 10 x).

About 60 s. The machine's load average is recorded with the figures (``serving_loadavg_*``).
The slow sockets and the serve starter are tests/slow_clients.py's.
"""

from __future__ import annotations

import importlib.util
import io
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np

from registry_api.config import ApiSettings

ROOT = Path(__file__).resolve().parent.parent
SLOW_CLIENTS = 1000
UPLOADS = 10


def _harness() -> ModuleType:
    """tests/slow_clients.py (the serve starter and slow sockets the tests use too)."""
    spec = importlib.util.spec_from_file_location("persona_slow_clients", ROOT / "tests" / "slow_clients.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/slow_clients.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_h = _harness()
PERSONA, SlowClients, seed, start_serve, stop, timed_gets, free_port = (
    _h.PERSONA,
    _h.SlowClients,
    _h.seed,
    _h.start_serve,
    _h.stop,
    _h.timed_gets,
    _h.free_port,
)


def slow_clients_run(home: Path, n_slow: int = SLOW_CLIENTS, n_requests: int = 300) -> dict[str, float]:
    """GET pack idle, then during ``n_slow`` slow-header clients, on one serve; the figures."""
    key = seed(home)
    proc, port = start_serve(home, home / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}/v1/personas/{PERSONA}/versions/1/pack"
        headers = {"X-API-Key": key}
        timed_gets(url, headers, 50)  # warm both workers' caches
        idle, idle_failed = timed_gets(url, headers, n_requests)
        slow = SlowClients(port, n_slow)
        try:
            during, failed = timed_gets(url, headers, n_requests)
            fresh, fresh_failed = timed_gets(url, headers, 50, fresh=True)
            timeout_s = ApiSettings().http_header_timeout_s
            all_cut = slow.wait_all_cut(timeout_s + 5)
            cut = slow.cut_after or [float("nan")]
            still_open = slow.open
        finally:
            slow.close()
        time.sleep(1.5)  # the server logs its cuts once a second
        log = (home / "serve.log").read_text()
    finally:
        stop(proc)
    idle_p50, during_p50 = statistics.median(idle) * 1e3, statistics.median(during) * 1e3
    return {
        "serving_slow_clients": n_slow,
        "serving_slow_clients_idle_p50_ms": round(idle_p50, 3),
        "serving_slow_clients_during_p50_ms": round(during_p50, 3),
        "serving_slow_clients_p50_ratio": round(during_p50 / idle_p50, 3),
        "serving_slow_clients_during_p99_ms": round(float(np.percentile(during, 99)) * 1e3, 3),
        "serving_slow_clients_failed_requests": idle_failed + failed + fresh_failed,
        "serving_slow_clients_requests": len(idle) + len(during) + len(fresh),
        "serving_slow_clients_refused_connects": slow.refused,
        "serving_slow_clients_header_timeout_s": timeout_s,
        "serving_slow_clients_cut_max_s": round(max(cut), 3),
        "serving_slow_clients_cut_p50_s": round(statistics.median(cut), 3),
        "serving_slow_clients_all_cut": all_cut,
        "serving_slow_clients_left_open": still_open,
        "serving_slow_clients_logged": "request headers not complete" in log,
    }


def _photo(seed_value: int) -> bytes:
    from PIL import Image  # noqa: PLC0415 - the pipeline extra; only this benchmark needs it

    rng = np.random.default_rng(seed_value)
    pixels = rng.integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def grpc_uploads_run(home: Path, n_uploads: int = UPLOADS, n_calls: int = 300) -> dict[str, float]:
    """GetPersonaPack idle, then while ``n_uploads`` large uploads run, on one serve's gRPC."""
    import grpc  # noqa: PLC0415

    from registry_api.grpc_gen import persona_registry_pb2 as pb  # noqa: PLC0415
    from registry_api.grpc_gen import persona_registry_pb2_grpc as pb_grpc  # noqa: PLC0415

    key = seed(home)
    grpc_port = free_port()
    proc, _ = start_serve(home, home / "serve-grpc.log", grpc_port=grpc_port)
    files = [pb.UploadFile(name=f"p{i}.jpg", data=_photo(i), content_type="image/jpeg") for i in range(4)]
    upload = pb.CreatePersonaVersionRequest(persona_id=PERSONA, files=files)
    limit = [("grpc.max_send_message_length", 2**30), ("grpc.max_receive_message_length", 2**30)]
    metadata = (("x-api-key", key),)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=limit) as channel:
            stub = pb_grpc.PersonaRegistryStub(channel)
            request = pb.GetPersonaPackRequest(persona_id=PERSONA, version="1")

            def calls(n: int, until: Callable[[], bool] = lambda: False) -> list[float]:
                samples = []
                for _ in range(n):
                    start = time.perf_counter()
                    stub.GetPersonaPack(request, metadata=metadata, timeout=60)
                    samples.append(time.perf_counter() - start)
                    if until():
                        break
                return samples

            calls(50)
            idle = calls(n_calls)
            with ThreadPoolExecutor(n_uploads) as pool:
                started = time.perf_counter()
                uploads = [
                    pool.submit(stub.CreatePersonaVersion, upload, metadata=metadata, timeout=300)
                    for _ in range(n_uploads)
                ]
                during = calls(100_000, lambda: all(f.done() for f in uploads))
                upload_s = time.perf_counter() - started
                accepted = sum(f.exception() is None for f in uploads)
    finally:
        stop(proc)
    idle_p99 = float(np.percentile(idle, 99)) * 1e3
    during_p99 = float(np.percentile(during, 99)) * 1e3
    return {
        "grpc_pack_p99_uploads": n_uploads,
        "grpc_pack_p99_upload_mib": round(sum(len(f.data) for f in files) / 2**20, 2),
        "grpc_pack_p99_idle_ms": round(idle_p99, 3),
        "grpc_pack_p99_during_uploads_ms": round(during_p99, 3),
        "grpc_pack_p99_ratio": round(during_p99 / idle_p99, 3),
        "grpc_pack_max_during_uploads_ms": round(max(during) * 1e3, 3),
        "grpc_pack_p99_calls_during": len(during),
        "grpc_pack_p99_uploads_accepted": accepted,
        "grpc_pack_p99_uploads_seconds": round(upload_s, 2),
    }


def main() -> None:
    import tempfile  # noqa: PLC0415

    from bench.common import record  # noqa: PLC0415

    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        slow = slow_clients_run(Path(tmp, "slow"))
        uploads = grpc_uploads_run(Path(tmp, "grpc"))
    after = os.getloadavg()
    record(
        "serving",
        {
            **slow,
            **uploads,
            "serving_loadavg_before": round(before[0], 2),
            "serving_loadavg_after": round(after[0], 2),
            "serving_cpu_count": os.cpu_count() or 0,
        },
    )


if __name__ == "__main__":
    main()
