"""``make faults``: a renderer's pack cache under damage. Seeded trials, each against a live
renderer process holding the pack loaded from its cache file: the file is truncated in place,
emptied or has one bit flipped (anywhere in it), or the source answers ``latest`` with an
altered copy of the held version. After each the renderer must be alive, must have served only
the published pack (from what it held, from a fresh load, from ``latest``), must have refused
the altered copy, and the file must be whole again. Prints the table and writes
``faults_cache_*`` keys to bench/results.json."""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from persona_core.publish import publish_pack
from persona_core.runtime import PackCache, StorePackSource
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

pytestmark = [pytest.mark.faults, pytest.mark.slow]
CHILD = Path(__file__).with_name("faults_cache_child.py")
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"
TRIALS_PER_KIND = 8
SEED = 23
KINDS = ("truncate", "empty", "bit flip", "alter")


class Renderer:
    """The child process, driven line by line over its stdin/stdout."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(root / "child.log").open("a"),
            text=True,
        )

    def ask(self, line: str) -> str | None:
        """Send a line, return the answer; None when the process died."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        assert ready, "the renderer child did not answer in 120 s"
        answer = self.proc.stdout.readline()
        return answer.strip() or None

    def close(self) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return self.proc.wait(60)


def _damage(kind: str, path: Path, root: Path, rng: random.Random) -> str:
    size = path.stat().st_size
    if kind == "truncate":
        at = rng.randrange(size)
        os.truncate(path, at)  # in place: the same inode the renderer read
        return f"to {at} of {size} bytes"
    if kind == "empty":
        os.truncate(path, 0)
        return "to 0 bytes"
    if kind == "bit flip":
        at, bit = rng.randrange(size), rng.randrange(8)
        with path.open("r+b") as fh:
            fh.seek(at)
            byte = fh.read(1)[0]
            fh.seek(at)
            fh.write(bytes([byte ^ (1 << bit)]))
        return f"bit {bit} of byte {at}"
    (root / "alter").touch()
    return "latest answers an altered v1"


def test_damaged_cache_heals_and_serves_only_the_published_pack(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs", b"faults-secret", "http://127.0.0.1:8000")
    meta = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")
    meta.create_persona("ada", {})
    meta.create_version("ada", {})
    pack = make_pack(blobs, "ada", 1, n_anchors=12)
    publish_pack(meta, blobs, pack)
    path = PackCache(tmp_path / "cache", StorePackSource(meta, blobs)).load("ada", 1).path
    assert path is not None
    good = path.read_bytes()
    published = {
        "content_hash": pack.content_hash,
        "drift_fail": pack.refresh_policy.identity_drift_fail,
        "sums": {
            ref: float(np.load(blobs.blob_path(ref)).sum())
            for ref in PackCache(tmp_path / "cache").load("ada", 1).matrix_refs
        },
    }
    rng = random.Random(SEED)
    rows: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for kind in KINDS:
        row = rows[kind] = {"trials": 0, "killed": 0, "bad": 0, "healed": 0, "refused": 0}
        renderer = Renderer(tmp_path)
        for trial in range(TRIALS_PER_KIND):
            if renderer.ask("HOLD") != "HELD":
                row["killed"] += 1
                renderer = Renderer(tmp_path)
                assert renderer.ask("HOLD") == "HELD"
            how = _damage(kind, path, tmp_path, rng)
            answer = renderer.ask("CHECK")
            (tmp_path / "alter").unlink(missing_ok=True)
            row["trials"] += 1
            if answer is None:
                row["killed"] += 1
                notes.append(f"{kind} #{trial} ({how}): renderer died, {renderer.close()}")
                renderer = Renderer(tmp_path)
                path.write_bytes(good)
                continue
            result: dict[str, Any] = json.loads(answer)
            served = [result["held"], result["fresh"], result["after"]]
            if kind != "alter":
                served.append({"ok": result["latest"]})
            bad = [s for s in served if s != {"ok": published}]
            row["bad"] += int(bool(bad))
            row["refused"] += int(kind == "alter" and result["latest"] == "refused")
            healed = path.read_bytes() == good
            row["healed"] += int(healed)
            if bad or not healed:
                notes.append(f"{kind} #{trial} ({how}): served {bad}, file whole: {healed}")
                path.write_bytes(good)
        assert renderer.close() == 0
    _report(rows)
    meta.close()
    assert not notes, notes
    totals = {k: sum(r[k] for r in rows.values()) for k in ("trials", "killed", "bad", "healed", "refused")}
    assert totals["trials"] == len(KINDS) * TRIALS_PER_KIND
    assert (totals["killed"], totals["bad"]) == (0, 0)
    assert totals["healed"] == totals["trials"]
    assert rows["alter"]["refused"] == TRIALS_PER_KIND


def _report(rows: dict[str, dict[str, int]]) -> None:
    print("\nfaults: renderer pack cache damaged under a live renderer (file kept whole = healed)")
    print(f"{'case':<10} {'trials':>6} {'killed':>6} {'bad packs':>9} {'healed':>6} {'refused':>7}")
    for kind, r in rows.items():
        print(
            f"{kind:<10} {r['trials']:>6} {r['killed']:>6} {r['bad']:>9} {r['healed']:>6} {r['refused']:>7}"
        )
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc.update(
        {
            "faults_cache_trials": sum(r["trials"] for r in rows.values()),
            "faults_cache_processes_killed": sum(r["killed"] for r in rows.values()),
            "faults_cache_bad_packs_served": sum(r["bad"] for r in rows.values()),
            "faults_cache_healed": sum(r["healed"] for r in rows.values()),
            "faults_cache_altered_refused": rows["alter"]["refused"],
            "faults_cache_cases": list(rows),
        }
    )
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
