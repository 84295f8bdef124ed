"""A publisher SIGKILLed between writing blobs and committing leaves no half-published
pack, and publishing again succeeds (every store combination)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from services import settings_env

from persona_core.errors import VersionNotFoundError
from persona_core.publish import publish_pack
from persona_core.settings import Settings
from persona_core.store.base import VersionStatus
from persona_core.store.from_settings import open_blob_store
from persona_core.store.metadata import SqlMetadataStore
from persona_core.testing import make_pack

CHILD = Path(__file__).with_name("crash_publish_child.py")


def _wait_ready(proc: subprocess.Popen[str], timeout_s: float = 120) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        proc.kill()
        pytest.fail("the publisher never reached its pause point")
    line = proc.stdout.readline().strip()
    if not line.startswith("READY"):
        proc.kill()
        pytest.fail(f"publisher said {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}")
    return line


def _published_rows(meta: SqlMetadataStore) -> list[tuple[str, int, list[str]]]:
    with meta.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT persona_id, version, blob_refs FROM published_packs")).all()
    # JSONB arrives decoded from PostgreSQL; SQLite hands back the JSON text.
    return [(r[0], r[1], r[2] if isinstance(r[2], list) else json.loads(r[2])) for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_blobs", "before_commit"])
def test_sigkill_mid_publish_leaves_no_half_pack_and_retry_succeeds(
    persona_settings: Settings, point: str
) -> None:
    meta = SqlMetadataStore.open(persona_settings.resolved_database_url)
    blobs = open_blob_store(persona_settings)
    meta.create_persona("alice", {})
    meta.create_version("alice", {"files": []})

    proc = subprocess.Popen(
        [sys.executable, str(CHILD), point, "alice", "1"],
        env={**os.environ, **settings_env(persona_settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        expected = "READY after_blobs" if point == "after_blobs" else "READY before_commit rows=1"
        assert _wait_ready(proc) == expected
        # Paused mid-publish: nothing is visible to other readers yet.
        assert meta.get_version("alice", 1).status == VersionStatus.PENDING
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    version = meta.get_version("alice", 1)
    assert version.status == VersionStatus.PENDING
    assert version.pack_ref is None
    with pytest.raises(VersionNotFoundError):
        meta.get_published("alice")
    for _pid, _v, refs in _published_rows(meta):
        assert all(blobs.exists(r) for r in refs)  # no published row points at a missing blob
    assert _published_rows(meta) == []

    # The same (deterministic) pack publishes on retry, reusing the blobs already written.
    pack = make_pack(blobs, "alice", 1, n_anchors=6)
    record = publish_pack(meta, blobs, pack)
    assert record.status == VersionStatus.PUBLISHED
    assert record.content_hash == pack.compute_content_hash()
    ((_, _, refs),) = _published_rows(meta)
    assert refs
    assert all(blobs.exists(r) for r in refs)
    meta.close()
