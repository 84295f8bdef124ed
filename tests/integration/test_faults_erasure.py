"""``make faults``, erasure and GC: seeded SIGKILLs at uniform random points of an erasure and
of a GC run, on SQLite + folder and on PostgreSQL + S3. After every kill: no pack of a live
persona lost a blob (a persona sharing photos with the erased one included), an erased
persona's pack is never readable once its erasure started, and the erasure resumed by a second
call completes (its exclusive blobs gone). Adds its rows to the faults table."""

from __future__ import annotations

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
from test_faults import BACKENDS, COLUMNS, TALLY, backend_settings, pack_is_whole, report

from persona_core.erasure import erase
from persona_core.errors import PersonaErasedError
from persona_core.ingest import submit_version
from persona_core.publish import publish_pack
from persona_core.retention import collect_garbage
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack

pytestmark = [pytest.mark.faults, pytest.mark.slow]
CHILD = Path(__file__).with_name("faults_erase_child.py")
FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
ERASE_KILLS = 20  # trials go on until this many kills landed inside an erasure (at most 3x)
GC_KILLS = 10
SEED = 31


def _run_and_kill(settings: Settings, what: str, delay_s: float | None) -> tuple[bool, float]:
    """Run the child on ``what``; SIGKILL it ``delay_s`` after GO (None: let it end).
    (killed, seconds from GO to the end)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), what],
        env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "the child never started"
        assert proc.stdout.readline().strip() == "GO", proc.stderr.read() if proc.stderr else ""
        go = time.monotonic()
        if delay_s is None:
            assert proc.stdout.readline().strip() == "DONE", proc.stderr.read() if proc.stderr else ""
            proc.wait(120)
            return False, time.monotonic() - go
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        return proc.wait(30) == -signal.SIGKILL, time.monotonic() - go
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _persona(meta: MetadataStore, blobs: BlobStore, persona_id: str, photos: list[str], seed: int) -> None:
    meta.create_persona(persona_id, {})
    files = [(name, (FACES / name).read_bytes(), "image") for name in photos]
    version = submit_version(meta, blobs, persona_id, files).version
    publish_pack(meta, blobs, make_pack(blobs, persona_id, version, n_anchors=6, seed=seed))


def _live_packs_whole(meta: MetadataStore, blobs: BlobStore, personas: list[str]) -> bool:
    return all(pack_is_whole(meta, blobs, p, 1) for p in personas)


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_sigkills_mid_erasure_lose_no_live_blob_and_resume(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = backend_settings(backend, request, tmp_path)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    rng = random.Random(f"{SEED}-erase-{backend}")
    # Keepers share a photo with every persona that is erased: their packs must stay whole.
    keepers = ["keeper-a", "keeper-b"]
    _persona(meta, blobs, "keeper-a", ["obama1.jpg", "biden.jpg"], seed=100)
    _persona(meta, blobs, "keeper-b", ["obama2.jpg"], seed=101)
    _persona(meta, blobs, "timing", ["obama.jpg", "obama1.jpg", "obama2.jpg"], seed=99)
    _, span_s = _run_and_kill(settings, "timing", None)  # kills land uniformly inside this span
    tally = dict.fromkeys(COLUMNS, 0)
    for trial in range(3 * ERASE_KILLS):
        if tally["faults"] >= ERASE_KILLS:
            break
        subject = f"erase-{trial}"
        _persona(meta, blobs, subject, ["obama.jpg", "obama1.jpg", "obama2.jpg"], seed=trial)
        exclusive = {h.ref for h in meta.refs.held_by(subject) if h.kind == "blob"} - {
            h.ref for k in keepers for h in meta.refs.held_by(k)
        }
        tally["trials"] += 1
        killed, _ = _run_and_kill(settings, subject, rng.uniform(0, 0.8 * span_s))
        tally["faults"] += killed
        tally["lost"] += not _live_packs_whole(meta, blobs, keepers)
        if meta.tombstones.job_for(subject) is not None:  # the erasure started: never served again
            with pytest.raises(PersonaErasedError):
                meta.get_published(subject, 1)
        # The operator runs the same erase again: it resumes (or starts) and completes.
        done = erase(meta, blobs, subject, actor="faults", reason="fault trial")
        recovered = done.state == "erased" and not any(blobs.exists(ref) for ref in exclusive)
        tally["recoveries"] += recovered
        tally["corrupt"] += not recovered
    tally["stuck"] = len(meta.tombstones.unfinished())
    TALLY[f"erase {backend}"] = tally
    report()
    meta.close()
    assert tally["faults"] >= ERASE_KILLS
    assert (tally["lost"], tally["corrupt"], tally["stuck"]) == (0, 0, 0), tally


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_sigkills_mid_gc_lose_no_live_blob(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = backend_settings(backend, request, tmp_path)
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    rng = random.Random(f"{SEED}-gc-{backend}")
    live = ["live-a", "live-b"]
    _persona(meta, blobs, "live-a", ["obama1.jpg", "biden.jpg"], seed=200)
    _persona(meta, blobs, "live-b", ["obama2.jpg", "obama1.jpg"], seed=201)

    def litter(n: int, trial: int) -> list[str]:  # what dead builds leave behind
        return [blobs.put(f"orphan {trial}.{i}".encode() * 64) for i in range(n)]

    litter(40, -1)
    _, span_s = _run_and_kill(settings, "gc", None)
    tally = dict.fromkeys(COLUMNS, 0)
    for trial in range(3 * GC_KILLS):
        if tally["faults"] >= GC_KILLS:
            break
        orphans = litter(40, trial)
        tally["trials"] += 1
        killed, _ = _run_and_kill(settings, "gc", rng.uniform(0, 0.8 * span_s))
        tally["faults"] += killed
        tally["lost"] += not _live_packs_whole(meta, blobs, live)
        report_ = collect_garbage(meta, blobs, retention_days=30, grace_s=0)  # the next run
        recovered = not any(blobs.exists(ref) for ref in orphans) and report_.dry_run is False
        tally["recoveries"] += recovered
        tally["corrupt"] += not _live_packs_whole(meta, blobs, live)
    TALLY[f"gc {backend}"] = tally
    report()
    meta.close()
    assert tally["faults"] >= GC_KILLS
    assert (tally["lost"], tally["corrupt"], tally["recoveries"]) == (0, 0, tally["trials"]), tally
