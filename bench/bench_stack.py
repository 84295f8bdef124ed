"""The deployed topology on this machine (tests/stack.py: PostgreSQL, SeaweedFS, Dagster code
server + daemon + webserver on deploy/dagster/dagster.yaml, the registry with 2 workers; queue
limit 2), in one run:

Backfill: STACK_BENCH_PERSONAS (50) personas x 8 photos (fixture portraits varied by persona)
uploaded over HTTP; the upload sensor requests one run per version, the daemon dequeues two at
a time; every version must publish.
  stack_backfill_personas_per_hour: personas / (first upload -> last published) x 3600.
    Goal >= 600 on 2 cores.
  stack_run_wall_s_p50 / _p99: per run, its dequeue (the daemon launches it: RUN_STARTING) ->
    its version's published_at. Goal: p50 <= 2 x the same persona's warm in-process build.
  stack_run_phases_s_p50: where a run's time goes: queued (waiting for a slot; not in the wall),
    dequeue -> run start (the launch and the worker's imports), run start -> first step
    (resources), first step -> published (the steps; each loads its models).
  stack_run_steps_s_p50: the profile of "steps_to_published": each step's median seconds
    (its input loads and output writes through the S3 IO manager included) and models_loaded,
    the sum of the steps' "models loaded in X s" lines.
  stack_warm_inprocess_build_s / stack_run_wall_over_warm_build: persona 0's photos built by
    build_version in this process with its models loaded (median of 3 after a warm-up), and the
    ratio of the run wall p50 to it.
  stack_get_pack_ms_idle / _backfill (p50, p99, max) and stack_get_pack_errors_backfill: GET of
    a published pack over HTTP with a read key, before the uploads (idle) and while the backfill
    runs. Goal: p99 during the backfill <= 3 x idle, 0 errors.
Rebuild backfill: then a rebuild of every one of those personas launched as data ops would,
the UI's backfill through Dagster's GraphQL API (launchPartitionBackfill on the rebuild job's
partition set, one run per persona); each rebuild makes a new version that the upload sensor
builds through the queue. stack_rebuild_backfill_s / _personas_per_hour / _published /
_status: launch -> every new version ended.
Faults: STACK_BENCH_FAULT_PERSONAS (12) more personas uploaded, then STACK_BENCH_FAULT_ROUNDS (3)
rounds of SIGKILL of a run worker (mid-build), of the daemon and of the code server, each
restarted; then every failed version is re-run through the queue.
  stack_fault_kills, stack_fault_lost (not published at the end), stack_fault_stuck (left
  building), stack_fault_duplicates (personas with a second version), stack_fault_failed_reruns
  (failed with a reason, then published by a re-run), stack_fault_stranded_pending (left pending:
  its run failed before it claimed the version; re-run too), stack_fault_queue_drained.
  Goal: >= 9 kills, 0 lost, 0 stuck, 0 duplicates.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import MODELS_LOADED, percentiles, record

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import start_postgres, start_seaweedfs  # noqa: E402
from stack import (  # noqa: E402
    BACKFILL_RUNNING,
    MAX_CONCURRENT_RUNS,
    Stack,
    backfill_status,
    kill_a_run_worker,
    launch_rebuild_backfill,
    persona_photos,
    rerun,
    statuses,
    unfinished_runs,
    upload_persona,
    wait_drained,
    wait_ended,
)

from persona_core.client import RegistryClient  # noqa: E402
from persona_pipeline.partition_keys import partition_key  # noqa: E402
from registry_api.api_keys import create_key  # noqa: E402

PERSONAS = int(os.environ.get("STACK_BENCH_PERSONAS", "50"))
FAULT_PERSONAS = int(os.environ.get("STACK_BENCH_FAULT_PERSONAS", "12"))
FAULT_ROUNDS = int(os.environ.get("STACK_BENCH_FAULT_ROUNDS", "3"))
IDLE_GETS = 300


class PackProbe(threading.Thread):
    """GETs one published pack over HTTP back to back (a renderer fetching), timing each."""

    def __init__(self, base_url: str, key: str, persona: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/v1/personas/{persona}/versions/1/pack"
        self.headers = {"X-API-Key": key}
        self.samples: list[float] = []
        self.errors = 0
        self.stop = threading.Event()

    def one(self, client: httpx.Client) -> None:
        started = time.perf_counter()
        try:
            ok = client.get(self.url, headers=self.headers).status_code == 200
        except httpx.HTTPError:
            ok = False
        self.samples.append(time.perf_counter() - started)
        self.errors += not ok

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                self.one(client)
                time.sleep(0.05)  # ~15-20 requests/s, like a few renderers polling


def _events(stack: Stack, versions: dict[str, int]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per published version: enqueue, dequeue (the run launched: Dagster 1.13 logs no separate
    dequeue event), run start, first step start, last step end, published; and the seconds of
    each step (start -> success or skip, its input loads and output writes through the S3 IO
    manager included) with the sum of the steps' "models loaded in X s"."""
    import dagster as dg  # noqa: PLC0415

    meta = stack.meta()
    rows, steps = [], []
    try:
        with stack.instance() as instance:
            for persona, version in versions.items():
                record_ = meta.get_version(persona, version)
                runs = instance.get_runs(
                    dg.RunsFilter(tags={"dagster/partition": partition_key(persona, version)})
                )
                done = [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]
                if not done or record_.published_at is None:
                    continue
                logs = instance.all_logs(done[0].run_id)
                at: dict[str, float] = {}
                step_started: dict[str, float] = {}
                took: dict[str, float] = {"models_loaded": 0.0}
                for entry in logs:
                    kind = entry.dagster_event.event_type_value if entry.dagster_event else None
                    step = entry.step_key or ""
                    if kind == "STEP_START":
                        step_started[step] = entry.timestamp
                    elif kind in {"STEP_SUCCESS", "STEP_SKIPPED", "STEP_FAILURE"} and step in step_started:
                        took[step] = entry.timestamp - step_started[step]
                    loaded = MODELS_LOADED.search(entry.user_message or "")
                    if loaded:
                        took["models_loaded"] += float(loaded.group(1))
                    if kind == "PIPELINE_ENQUEUED":
                        at.setdefault("enqueued", entry.timestamp)
                    elif kind == "PIPELINE_STARTING":  # the daemon took it off the queue and launched it
                        at.setdefault("dequeued", entry.timestamp)
                    elif kind == "PIPELINE_START":
                        at.setdefault("started", entry.timestamp)
                    elif kind == "STEP_START":
                        at.setdefault("first_step", entry.timestamp)
                at["published"] = record_.published_at.timestamp()
                if {"dequeued", "started", "first_step"} <= set(at):
                    rows.append(at)
                    steps.append(took)
    finally:
        meta.close()
    return rows, steps


def _warm_inprocess_build() -> float:
    """persona 0's photos built in this process with its models loaded: median of 3 after one.
    Each build has a home of its own: a build reuses the masks and embeddings an earlier build
    of the same photos stored (the step cache, keyed by the photo's sha256), which no run of
    the backfill can (each persona's photos are its own), so a shared home would compare the
    runs with cache hits."""
    import dagster as dg  # noqa: PLC0415

    from persona_core.ingest import submit_version  # noqa: PLC0415
    from persona_core.settings import Settings  # noqa: PLC0415
    from persona_core.store.from_settings import open_blob_store, open_metadata_store  # noqa: PLC0415
    from persona_pipeline.build import build_version  # noqa: PLC0415

    photos = persona_photos(0)
    files = [(name, data, "image") for name, data in photos]
    modes = {name: "A_SELFIE" for name, _ in photos}
    times = []
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        for i in range(4):
            settings = Settings(home=Path(tmp) / str(i))
            meta, blobs = open_metadata_store(settings), open_blob_store(settings)
            persona = f"warm{i}"
            meta.create_persona(persona, {})
            version = submit_version(meta, blobs, persona, files, camera_modes=modes)
            started = time.perf_counter()
            result = build_version(persona, version.version, settings, instance)
            times.append(time.perf_counter() - started)
            if result.status.value != "published":
                raise RuntimeError(f"warm build not published: {result.record.reasons}")
    return statistics.median(times[1:])


def _backfill(stack: Stack, client: RegistryClient, probe_key: str) -> tuple[dict[str, int], dict[str, Any]]:
    state = stack.state
    assert state is not None
    upload_persona(client, "probe", 999)
    wait_ended(stack, {"probe": 1}, timeout_s=600)  # also warms the code server's first run
    probe = PackProbe(state.registry_url, probe_key, "probe")
    with httpx.Client(timeout=30) as http:
        for _ in range(IDLE_GETS):
            probe.one(http)
    idle, idle_errors = percentiles(probe.samples, 1e3), probe.errors
    probe.samples, probe.errors = [], 0
    probe.start()
    started = time.monotonic()
    versions = {}
    for i in range(PERSONAS):
        versions[f"bench-{i:03d}"] = upload_persona(client, f"bench-{i:03d}", i)
    uploaded_s = time.monotonic() - started
    records = wait_ended(stack, versions, timeout_s=PERSONAS * 120)
    elapsed = time.monotonic() - started
    probe.stop.set()
    probe.join(30)
    statuses_ = [r.status.value for r in records.values()]
    rows, steps = _events(stack, versions)
    if not rows:
        raise RuntimeError("no published run had its dequeue, start and step events")
    walls = [r["published"] - r["dequeued"] for r in rows]
    phases = {
        "queued": statistics.median(r["dequeued"] - r.get("enqueued", r["dequeued"]) for r in rows),
        "launch_and_imports": statistics.median(r["started"] - r["dequeued"] for r in rows),
        "setup_and_models": statistics.median(r["first_step"] - r["started"] for r in rows),
        # The version is published inside persona_pack, before that step's success is logged.
        "steps_to_published": statistics.median(r["published"] - r["first_step"] for r in rows),
    }
    return versions, {
        "stack_backfill_personas": PERSONAS,
        "stack_backfill_photos_per_persona": 8,
        "stack_backfill_published": statuses_.count("published"),
        "stack_backfill_upload_s": round(uploaded_s, 1),
        "stack_backfill_s": round(elapsed, 1),
        "stack_backfill_personas_per_hour": round(statuses_.count("published") / elapsed * 3600, 1),
        "stack_run_wall_s_p50": round(statistics.median(walls), 2),
        "stack_run_wall_s_p99": round(float(percentiles(walls, 1)["p99"]), 2),
        "stack_run_phases_s_p50": {k: round(v, 2) for k, v in phases.items()},
        # The profile of "steps_to_published": each step's median seconds in a queued run.
        "stack_run_steps_s_p50": {
            name: round(statistics.median(t[name] for t in steps if name in t), 2)
            for name in sorted({name for t in steps for name in t})
        },
        "stack_get_pack_ms_idle": idle,
        "stack_get_pack_errors_idle": idle_errors,
        "stack_get_pack_ms_backfill": percentiles(probe.samples, 1e3),
        "stack_get_pack_errors_backfill": probe.errors,
        "stack_get_pack_requests_backfill": len(probe.samples),
    }


def _rebuild_backfill(stack: Stack, built: dict[str, int]) -> dict[str, Any]:
    started = time.monotonic()
    backfill = launch_rebuild_backfill(stack, sorted(built))
    deadline = started + len(built) * 240
    status = ""
    while time.monotonic() < deadline:
        status = backfill_status(stack, backfill)
        if status not in BACKFILL_RUNNING:
            break
        time.sleep(2)
    rebuilt = {persona: version + 1 for persona, version in built.items()}
    records = wait_ended(stack, rebuilt, timeout_s=max(deadline - time.monotonic(), 60))
    elapsed = time.monotonic() - started
    published = sum(r.status.value == "published" for r in records.values())
    print(
        f"  rebuild backfill through GraphQL: {status}, {published}/{len(built)} published in {elapsed:.0f} s"
    )
    return {
        "stack_rebuild_backfill_personas": len(built),
        "stack_rebuild_backfill_status": status,
        "stack_rebuild_backfill_published": published,
        "stack_rebuild_backfill_s": round(elapsed, 1),
        "stack_rebuild_backfill_personas_per_hour": round(published / elapsed * 3600, 1),
    }


def _faults(stack: Stack, client: RegistryClient) -> dict[str, Any]:
    versions = {
        f"fault-{i:02d}": upload_persona(client, f"fault-{i:02d}", 500 + i) for i in range(FAULT_PERSONAS)
    }
    kills: list[tuple[str, str]] = []
    started = time.monotonic()
    for _ in range(FAULT_ROUNDS):
        kills.append(("run worker", kill_a_run_worker(stack)))
        stack.kill("daemon", signal.SIGKILL)
        kills.append(("daemon", ""))
        time.sleep(2)
        stack.restart("daemon")
        kill_a_run_worker_or_none = _wait_building(stack)
        stack.kill("code", signal.SIGKILL)
        kills.append(("code server", kill_a_run_worker_or_none))
        stack.restart("code")
    wait_drained(stack, timeout_s=FAULT_PERSONAS * 120)
    records = statuses(stack, versions)
    failed = {p: r for p, r in records.items() if r.status.value == "failed"}
    with_reason = sum(bool(r.reasons and r.reasons[0]) for r in failed.values())
    # A run that failed before it claimed its version (launched into a killed code server)
    # leaves the version pending until PERSONA_PENDING_TIMEOUT_S: counted, then re-run too.
    stranded = sorted(p for p, r in records.items() if r.status.value == "pending")
    for persona in [*failed, *stranded]:
        rerun(stack, partition_key(persona, versions[persona]))
    drained = True
    try:
        wait_drained(stack, timeout_s=max(len(failed), 1) * 120)  # the re-runs, queued by now
    except AssertionError:
        drained = False
    records = wait_ended(stack, versions, timeout_s=60)
    meta = stack.meta()
    try:
        duplicates = sum(len(meta.list_versions(p)) > 1 for p in versions)
    finally:
        meta.close()
    ended = [r.status.value for r in records.values()]
    print("  kill                  building persona")
    for kind, persona in kills:
        print(f"  {kind:<20}  {persona or '-'}")
    print(f"  failed then re-run: {sorted(failed)}; left pending, re-run: {stranded}")
    return {
        "stack_fault_personas": FAULT_PERSONAS,
        "stack_fault_kills": len(kills),
        "stack_fault_kills_by_kind": {
            k: sum(kind == k for kind, _ in kills) for k in ("run worker", "daemon", "code server")
        },
        "stack_fault_failed_reruns": len(failed),
        "stack_fault_failed_with_reason": with_reason,
        "stack_fault_stranded_pending": len(stranded),
        "stack_fault_lost": sum(s != "published" for s in ended),
        "stack_fault_stuck": sum(s == "building" for s in ended),
        "stack_fault_duplicates": duplicates,
        "stack_fault_queue_drained": drained and not unfinished_runs(stack),
        "stack_fault_trial_s": round(time.monotonic() - started, 1),
    }


def _wait_building(stack: Stack, timeout_s: float = 120) -> str:
    from stack import building_workers  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = building_workers(stack)
        if workers:
            return next(iter(workers))
        time.sleep(0.5)
    return ""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # PostgreSQL runs as its own user when this runs as root
        postgres, s3 = start_postgres(root / "postgres"), start_seaweedfs(root / "s3")
        stack = Stack(root / "stack", postgres, s3)
        try:
            state = stack.start()
            meta = stack.meta()
            try:
                read_key = create_key(meta, "bench-reader", ["read"])[1]
            finally:
                meta.close()
            with RegistryClient(state.registry_url, state.admin_key, timeout_s=120) as client:
                built, backfill = _backfill(stack, client, read_key)
                rebuild = _rebuild_backfill(stack, built)
                faults = _faults(stack, client)
        finally:
            stack.stop()
            s3.stop()
            postgres.stop()
    warm = _warm_inprocess_build()
    backfill["stack_warm_inprocess_build_s"] = round(warm, 2)
    backfill["stack_run_wall_over_warm_build"] = round(backfill["stack_run_wall_s_p50"] / warm, 2)
    # STACK_BENCH_RESULTS: a file other than bench/results.json (a trial at a smaller size).
    results = os.environ.get("STACK_BENCH_RESULTS")
    record(
        "stack",
        {
            **backfill,
            **rebuild,
            **faults,
            "stack_max_concurrent_runs": MAX_CONCURRENT_RUNS,
            "stack_load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        path=Path(results) if results else None,
    )


if __name__ == "__main__":
    main()
