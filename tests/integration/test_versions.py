"""fail_version_on_error: a failure inside the block marks the version failed with the reason
and the original error propagates, even when marking it fails too; verdicts already stored
(blocked, published) are never rewritten."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from persona_core.errors import (
    BlobNotFoundError,
    ImmutableVersionError,
    InvalidTransitionError,
    StoreUnavailableError,
)
from persona_core.store.base import VersionStatus
from persona_core.store.metadata import SqlMetadataStore
from persona_core.versions import fail_version_on_error


@contextmanager
def database_away(meta: SqlMetadataStore, db_dir: Path) -> Iterator[None]:
    """The SQLite database unreachable for new connections (its folder moved) until the end."""
    away = db_dir.with_name(db_dir.name + "-away")
    db_dir.rename(away)
    meta.close()  # pooled connections would still reach the moved file
    try:
        yield
    finally:
        away.rename(db_dir)
        meta.close()


@pytest.fixture
def pending(metadata_store: SqlMetadataStore) -> int:
    metadata_store.create_persona("alice", {})
    return metadata_store.create_version("alice", {"files": []}).version


@pytest.mark.parametrize(
    "error",
    [BlobNotFoundError("blob sha256:ab not found"), StoreUnavailableError("S3 unreachable"), KeyError("x")],
    ids=["blob-missing", "store-down", "bug"],
)
def test_error_marks_the_version_failed_with_the_reason_and_propagates(
    metadata_store: SqlMetadataStore, pending: int, error: Exception
) -> None:
    with pytest.raises(type(error)) as raised, fail_version_on_error(metadata_store, "alice", pending, "qc"):
        raise error
    assert raised.value is error
    record = metadata_store.get_version("alice", pending)
    assert record.status == VersionStatus.FAILED
    assert record.reasons == [f"qc: {type(error).__name__}: {error}"]


def test_no_error_changes_nothing(metadata_store: SqlMetadataStore, pending: int) -> None:
    with fail_version_on_error(metadata_store, "alice", pending, "qc"):
        pass
    assert metadata_store.get_version("alice", pending).status == VersionStatus.PENDING


@pytest.mark.parametrize("error", [InvalidTransitionError, ImmutableVersionError])
def test_a_stored_verdict_is_never_rewritten(
    metadata_store: SqlMetadataStore, pending: int, error: type[Exception]
) -> None:
    """A blocked version refused at publish stays blocked with its reasons, not 'failed'."""
    reasons = ["C_CUTAWAY: 1 usable anchor(s), need at least 2"]
    metadata_store.transition("alice", pending, VersionStatus.BLOCKED, reasons=reasons)
    with pytest.raises(error), fail_version_on_error(metadata_store, "alice", pending, "persona_pack"):
        raise error("alice v1 is blocked")
    record = metadata_store.get_version("alice", pending)
    assert (record.status, record.reasons) == (VersionStatus.BLOCKED, reasons)


def test_the_original_error_survives_a_database_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the database is what failed, marking the version fails too: the caller still sees
    the first error (with a note), and the second is logged."""
    db_dir = tmp_path / "db"
    meta = SqlMetadataStore.open(f"sqlite:///{db_dir / 'meta.db'}")
    meta.create_persona("alice", {})
    meta.create_version("alice", {"files": []})
    original = StoreUnavailableError("S3 at http://s3.internal unreachable")
    with database_away(meta, db_dir):
        with caplog.at_level(logging.ERROR, logger="persona_core.versions"), pytest.raises(
            StoreUnavailableError
        ) as raised, fail_version_on_error(meta, "alice", 1, "manifest not written"):
            raise original
        assert raised.value is original
        assert any("could not be marked failed" in note for note in raised.value.__notes__)
        assert "could not mark alice v1 failed" in caplog.text
    assert meta.get_version("alice", 1).status == VersionStatus.PENDING
    meta.close()
