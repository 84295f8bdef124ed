"""Child process of test_publish_crash: publishes a make_pack pack with the stores named by
the PERSONA_* environment, and stops dead at one point so the parent can SIGKILL it there.

  after_blobs    every blob and the pack JSON are written; the DB transaction has not begun
  before_commit  inside publish's transaction: rows inserted and updated, COMMIT not yet sent
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import Connection, event

from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_core.testing import make_pack


def _pause(point: str, detail: str = "") -> None:
    print(f"READY {point}{detail}", flush=True)
    time.sleep(600)


def _pause_in_transaction(conn: Connection) -> None:
    # Proof that the pause sits inside publish's transaction: its own row is there, uncommitted.
    rows = conn.exec_driver_sql("SELECT count(*) FROM published_packs").scalar()
    _pause("before_commit", f" rows={rows}")


def main() -> None:
    point, persona_id, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = Settings()
    blobs = open_blob_store(settings)
    meta = open_metadata_store(settings)
    pack = make_pack(blobs, persona_id, version, n_anchors=6)
    if point == "after_blobs":
        blobs.put(pack.sealed().canonical_bytes())
        _pause(point)
    elif point == "before_commit":
        # SQLAlchemy's "commit" event runs just before COMMIT goes to the database; the
        # first commit after this point is publish's own transaction.
        event.listen(meta.engine, "commit", _pause_in_transaction)
    else:
        raise SystemExit(f"unknown point {point!r}")
    publish_pack(meta, blobs, pack)
    print("PUBLISHED", flush=True)


if __name__ == "__main__":
    main()
