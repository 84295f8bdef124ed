"""Child process for the erasure / GC fault trials: prints GO, then erases the persona named
on the command line (or runs GC with no grace period), then prints DONE. The parent SIGKILLs
it at a random moment in between."""

from __future__ import annotations

import sys

from persona_core.erasure import erase
from persona_core.retention import collect_garbage
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store


def main() -> None:
    what = sys.argv[1]
    settings = Settings()
    meta, blobs = open_metadata_store(settings), open_blob_store(settings)
    print("GO", flush=True)
    if what == "gc":
        collect_garbage(meta, blobs, retention_days=30, grace_s=0)
    else:
        erase(meta, blobs, what, actor="faults", reason="fault trial")
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
