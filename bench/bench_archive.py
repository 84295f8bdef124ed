"""Portable archives: export and fully-verified import of a 200-anchor pack (embedded stores)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import record
from persona_core.archive import export_pack, import_pack, verify_archive
from persona_core.publish import publish_pack
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

SECRET = b"bench-signing-secret-0123456789"


def _stores(root: Path) -> tuple[SqlMetadataStore, LocalBlobStore]:
    root.mkdir(parents=True)
    return SqlMetadataStore.open(f"sqlite:///{root / 'meta.db'}"), LocalBlobStore(root / "blobs", SECRET, "http://b")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta, blobs = _stores(root / "src")
        meta.create_persona("bench", {})
        meta.create_version("bench", {})
        publish_pack(meta, blobs, make_pack(blobs, "bench", 1, n_anchors=200, image_size=128))

        t0 = time.perf_counter()
        exported = export_pack(meta, blobs, "bench", 1, root / "bench.personapack")
        t1 = time.perf_counter()
        verify_archive(exported.path)
        t2 = time.perf_counter()
        meta_b, blobs_b = _stores(root / "dst")
        import_pack(meta_b, blobs_b, exported.path)
        t3 = time.perf_counter()
    record(
        "archive",
        {
            "archive_200_anchors_blobs": exported.blob_count,
            "archive_200_anchors_mib": round(exported.size_bytes / 2**20, 2),
            "archive_export_200_anchors_s": round(t1 - t0, 3),
            "archive_verify_200_anchors_s": round(t2 - t1, 3),
            "archive_import_200_anchors_s": round(t3 - t2, 3),
        },
    )


if __name__ == "__main__":
    main()
