"""Child process of test_faults: says GO once its stores are open, then writes a make_pack
pack's blobs and publishes it, so the parent's SIGKILL lands at a random point of the work."""

from __future__ import annotations

import sys

from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack


def main() -> None:
    persona_id, version = sys.argv[1], int(sys.argv[2])
    settings = Settings()
    blobs, meta = open_blob_store(settings), open_metadata_store(settings)
    print("GO", flush=True)
    publish_pack(meta, blobs, make_pack(blobs, persona_id, version, n_anchors=6))
    print("PUBLISHED", flush=True)


if __name__ == "__main__":
    main()
