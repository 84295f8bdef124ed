"""Child process for the renderer cache damage trials: a renderer over a real store source.

On ``HOLD`` it loads ada v1 from the disk cache and prints ``HELD``; the parent then damages
the file in place (or makes the source answer ``latest`` with an altered v1). On ``CHECK`` it
reads everything from the pack it holds, loads v1 again through a fresh cache (and, for the
alter trials, ``latest``), reads everything from that too, and prints one JSON line: the
content hash and per-matrix sums of what it served, and how ``latest`` was answered."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_core.errors import PackConflictError, PersonaCoreError
from persona_core.pack import canonical_json, content_hash
from persona_core.runtime import CachedPack, PackCache, StorePackSource
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore


class MaybeAltered(StorePackSource):
    """Answers ``latest`` with v1 altered (drift fail line 0.01, hash recomputed) while the
    parent's flag file exists: a compromised mirror."""

    def __init__(self, meta: SqlMetadataStore, blobs: LocalBlobStore, flag: Path) -> None:
        super().__init__(meta, blobs)
        self.flag = flag

    def pack_document(self, persona_id: str, version: int | None) -> bytes:
        data = super().pack_document(persona_id, version)
        if version is not None or not self.flag.exists():
            return data
        doc = json.loads(data)
        doc["refresh_policy"]["identity_drift_fail"] = 0.01
        doc["content_hash"] = content_hash(doc)
        return canonical_json(doc)


def served(pack: CachedPack) -> dict[str, Any]:
    """What a renderer would use from the pack, reduced to comparable values."""
    return {
        "content_hash": pack.pack.content_hash,
        "drift_fail": pack.refresh_policy.identity_drift_fail,
        "sums": {ref: float(pack.matrix(ref).sum()) for ref in pack.matrix_refs},
    }


def attempt(load: Callable[[], CachedPack]) -> dict[str, Any]:
    """What was served, or the typed error instead of a pack."""
    try:
        return {"ok": served(load())}
    except PersonaCoreError as exc:
        return {"error": exc.code}


def main() -> None:
    root = Path(sys.argv[1])
    blobs = LocalBlobStore(root / "blobs", b"faults-secret", "http://127.0.0.1:8000")
    meta = SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}")
    source = MaybeAltered(meta, blobs, root / "alter")
    held: CachedPack | None = None
    for line in sys.stdin:
        if line.strip() == "HOLD":
            held = PackCache(root / "cache", source).load("ada", 1)
            print("HELD", flush=True)
            continue
        assert held is not None
        print(json.dumps(check(root, source, held)), flush=True)


def check(root: Path, source: MaybeAltered, held: CachedPack) -> dict[str, Any]:
    fresh = PackCache(root / "cache", source, latest_ttl_s=0)
    result: dict[str, Any] = {
        "held": attempt(lambda: held),
        "fresh": attempt(lambda: fresh.load("ada", 1)),
    }
    try:
        result["latest"] = served(fresh.load("ada"))
    except PackConflictError:
        result["latest"] = "refused"
    result["after"] = attempt(lambda: PackCache(root / "cache").load("ada", 1))
    return result


if __name__ == "__main__":
    main()
