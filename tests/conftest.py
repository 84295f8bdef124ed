"""Shared fixtures: real stores on every backend, real servers started once per session.

Servers (session-scoped, started on first use, stopped at exit; see tests/services.py):
  postgres_server   PostgresService: embedded PostgreSQL 18, or PERSONA_TEST_POSTGRES_URL
  s3_server         S3Service: SeaweedFS ``weed mini``, or PERSONA_TEST_S3_ENDPOINT_URL (+ keys)

Per test (function-scoped, isolated):
  sqlite_url        a SQLite file URL in tmp_path
  postgres_url      a fresh, empty PostgreSQL database (dropped afterwards)    [marker: postgres]
  database_url      parametrized: sqlite | postgres
  metadata_store    SqlMetadataStore on database_url, migrated               (sqlite | postgres)
  s3_bucket         a fresh bucket on s3_server (deleted afterwards)         [marker: s3]
  s3_settings       Settings(home=tmp_path, blob_url=s3://<s3_bucket>, S3 endpoint + keys)
  s3_blob_store     S3BlobStore on s3_bucket
  local_blob_store  LocalBlobStore in tmp_path
  blob_settings     parametrized: local | s3 -- Settings with only the blob side chosen
  blob_store        the BlobStore for blob_settings                          (local | s3)
  persona_settings  Settings for database_url x blob_settings (4 combinations); pass it to
                    subprocesses with services.settings_env(persona_settings)

The ``postgres`` and ``s3`` markers sit on the parametrized cases, so ``-m "not postgres and
not s3"`` runs only the embedded backends.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import PostgresService, S3Service, postgres_service, s3_service

from persona_core.settings import Settings
from persona_core.store.base import BlobStore
from persona_core.store.from_settings import open_blob_store
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from persona_core.store.s3 import S3BlobStore

# A run started in the background by a non-interactive shell (`.ci/run &`, nohup) inherits
# SIGINT ignored; children inherit an ignored signal across exec, and Dagster maps SIGTERM to
# SIGINT's disposition, so `dagster dev` and the stack's processes would ignore the SIGTERM the
# tests stop them with. The tests run with the dispositions of an ordinary terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)
LOCAL = pytest.param("local", id="local")
S3 = pytest.param("s3", id="s3", marks=pytest.mark.s3)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresService]:
    service = postgres_service()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Service]:
    service = s3_service()
    yield service
    service.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'persona.db'}"


@pytest.fixture
def postgres_url(postgres_server: PostgresService) -> Iterator[str]:
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=[SQLITE, POSTGRES])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=[SQLITE, POSTGRES])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all (a PostgreSQL one not migrated by the deploy step)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresService = request.getfixturevalue("postgres_server")
    url = server.create_database(migrated=False)
    yield url
    server.drop_database(url)


@pytest.fixture
def metadata_store(database_url: str) -> Iterator[SqlMetadataStore]:
    store = SqlMetadataStore.open(database_url)
    yield store
    store.close()


@pytest.fixture
def s3_bucket(s3_server: S3Service) -> Iterator[str]:
    bucket = s3_server.create_bucket()
    yield bucket
    s3_server.delete_bucket(bucket)


@pytest.fixture
def s3_settings(s3_server: S3Service, s3_bucket: str, tmp_path: Path) -> Settings:
    return s3_server.settings(s3_bucket, home=tmp_path)


@pytest.fixture
def s3_blob_store(s3_settings: Settings) -> S3BlobStore:
    store = open_blob_store(s3_settings)
    assert isinstance(store, S3BlobStore)
    return store


@pytest.fixture
def local_blob_store(tmp_path: Path) -> LocalBlobStore:
    store = open_blob_store(Settings(home=tmp_path))
    assert isinstance(store, LocalBlobStore)
    return store


@pytest.fixture(params=[LOCAL, S3])
def blob_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "s3":
        return request.getfixturevalue("s3_settings")  # type: ignore[no-any-return]
    return Settings(home=tmp_path)


@pytest.fixture
def blob_store(blob_settings: Settings) -> BlobStore:
    return open_blob_store(blob_settings)


@pytest.fixture
def persona_settings(blob_settings: Settings, database_url: str) -> Settings:
    return blob_settings.model_copy(update={"database_url": database_url})


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Derived model files (exported ONNX) go to a per-session folder, never the user's cache.
    Session-wide, so a model first loaded by a pipeline or API test uses the same folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONA_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        mp.delenv("PERSONA_MODEL_DIR", raising=False)
        yield
