"""``make faults``: seeded SIGKILLs at random points of publish on SQLite + folder and on
PostgreSQL + S3. After every kill the version is either published whole (every blob there,
the pack's bytes hash to its ref) or not at all; a retry then publishes it, and no version is
left pending or building. Prints the table and merges ``faults_*`` keys into
bench/results.json. (Outages of a running registry: test_store_outages, same marker.)"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from services import settings_env

from persona_core.errors import VersionNotFoundError
from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore, VersionStatus
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack

pytestmark = [pytest.mark.faults, pytest.mark.slow]
CHILD = Path(__file__).with_name("faults_publish_child.py")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"
TRIALS_PER_BACKEND = 16
SEED = 11
TALLY: dict[str, dict[str, int]] = {}
LAST_RUN_S = [0.0]  # seconds from GO to PUBLISHED of the last unkilled publisher


def _run_and_kill(settings: Settings, persona_id: str, version: int, delay_s: float | None) -> bool:
    """Start a publisher, SIGKILL it ``delay_s`` after it is ready (None: let it finish);
    True if it was killed."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), persona_id, str(version)],
        env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "the publisher never started"
        assert proc.stdout.readline().strip() == "GO", proc.stderr.read() if proc.stderr else ""
        if delay_s is None:
            go = time.monotonic()
            assert proc.stdout.readline().strip() == "PUBLISHED"
            LAST_RUN_S[0] = time.monotonic() - go
            proc.wait(120)
            return False
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        return proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


BACKENDS = ["sqlite_folder", "postgres_s3"]
COLUMNS = ("trials", "faults", "lost", "corrupt", "stuck", "recoveries")


def backend_settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The embedded default in ``tmp_path``, or a fresh PostgreSQL database and S3 bucket."""
    if backend == "sqlite_folder":
        return Settings(home=tmp_path)
    base: Settings = request.getfixturevalue("s3_settings")
    return base.model_copy(update={"database_url": request.getfixturevalue("postgres_url")})


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_sigkills_mid_publish_lose_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = backend_settings(backend, request, tmp_path)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    rng = random.Random(f"{SEED}-{backend}")
    tally = dict.fromkeys(COLUMNS, 0)
    # One unkilled publish tells how long the work takes here; kills land uniformly inside it.
    meta.create_persona("timing", {})
    meta.create_version("timing", {"files": []})
    assert not _run_and_kill(settings, "timing", 1, None)
    span_s = max(LAST_RUN_S[0], 0.05)
    meta.create_persona("crash", {})
    for version in range(1, TRIALS_PER_BACKEND + 1):
        meta.create_version("crash", {"files": []})
        tally["trials"] += 1
        tally["faults"] += _run_and_kill(settings, "crash", version, rng.uniform(0, span_s))
        record = meta.get_version("crash", version)
        if record.status == VersionStatus.PUBLISHED:
            tally["corrupt"] += not pack_is_whole(meta, blobs, "crash", version)
        else:
            with pytest.raises(VersionNotFoundError):
                meta.get_published("crash", version)
            # The retry a user (or the sensor) makes: the same pack publishes.
            pack = make_pack(blobs, "crash", version, n_anchors=6)
            if publish_pack(meta, blobs, pack).status == VersionStatus.PUBLISHED:
                tally["recoveries"] += 1
            else:
                tally["lost"] += 1
    tally["stuck"] = sum(
        v.status in (VersionStatus.PENDING, VersionStatus.BUILDING) for v in meta.list_versions("crash")
    )
    TALLY[backend] = tally
    report()
    meta.close()
    assert tally["faults"] >= TRIALS_PER_BACKEND // 2
    assert (tally["lost"], tally["corrupt"], tally["stuck"]) == (0, 0, 0), tally


def pack_is_whole(meta: MetadataStore, blobs: BlobStore, persona_id: str, version: int) -> bool:
    """The published pack's bytes hash to its ref and every blob it names is stored."""
    published = meta.get_published(persona_id, version)
    try:
        blobs.get(published.pack_ref)  # verifies the bytes against the ref
    except Exception:
        return False
    return all(blobs.exists(r) for r in published.blob_refs)


def outage_row(name: str, *, recovered: bool) -> None:
    """One outage case (a frozen or stopped server, a full disk) as a row of the table: it
    passed its test, so nothing was lost or corrupted and no version was left stuck."""
    TALLY[name] = dict.fromkeys(COLUMNS, 0) | {"trials": 1, "faults": 1, "recoveries": int(recovered)}
    report()


def report() -> None:
    print("\nfaults: seeded SIGKILLs mid-publish, mid-build, mid-erasure, mid-GC and mid-dispatch; "
          "servers frozen and stopped; a full disk")
    print(
        f"{'case':<20} {'trials':>6} {'faults':>6} {'lost':>5} {'corrupt':>7} {'stuck':>5} "
        f"{'recovered':>9}"
    )
    for name, t in TALLY.items():
        print(
            f"{name:<20} {t['trials']:>6} {t['faults']:>6} {t['lost']:>5} {t['corrupt']:>7} "
            f"{t['stuck']:>5} {t['recoveries']:>9}"
        )
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    totals = {k: sum(t[k] for t in TALLY.values()) for k in next(iter(TALLY.values()))}
    doc.update(
        {
            "faults_kill_trials": sum(t["trials"] for n, t in TALLY.items() if _is_kill_row(n)),
            "faults_outage_cases": sum(t["trials"] for n, t in TALLY.items() if not _is_kill_row(n)),
            "faults_injected": totals["faults"],
            "faults_packs_lost": totals["lost"],
            "faults_packs_corrupt": totals["corrupt"],
            "faults_versions_stuck": totals["stuck"],
            "faults_recoveries": totals["recoveries"],
            "faults_cases": sorted(TALLY),
        }
    )
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _is_kill_row(name: str) -> bool:
    return name in BACKENDS or name.startswith(("build ", "erase ", "gc ", "webhooks "))
