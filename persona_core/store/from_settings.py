"""Pick the blob and metadata stores from :class:`~persona_core.settings.Settings`: the one
place that maps configuration to implementations."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from persona_core.errors import InvalidInputError
from persona_core.settings import Settings
from persona_core.store import migrate
from persona_core.store.base import BlobStore
from persona_core.store.engine import Database
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore


def open_blob_store(settings: Settings) -> BlobStore:
    """``file:///path`` -> LocalBlobStore; ``s3://bucket[/prefix]`` -> S3BlobStore.
    The S3 bucket must exist (``S3BlobStore.ensure_bucket`` creates it explicitly)."""
    url = urlparse(settings.resolved_blob_url)
    if url.scheme == "file":
        if url.netloc not in ("", "localhost"):
            raise InvalidInputError(f"file URLs must be local: {settings.resolved_blob_url!r}")
        return LocalBlobStore(
            unquote(url.path),
            signing_secret=settings.signing_secret.get_secret_value().encode(),
            public_base_url=settings.public_base_url,
        )
    if url.scheme == "s3":
        # boto3 takes ~0.3 s to import: only a process whose blobs are in S3 pays it.
        from persona_core.store.s3 import S3BlobStore  # noqa: PLC0415

        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        return S3BlobStore(
            url.netloc,
            prefix=url.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=secret,
            region=settings.s3_region,
            # A hung server answers "unavailable" within ~2 timeouts instead of minutes.
            connect_timeout_s=settings.store_timeout_s,
            read_timeout_s=settings.store_timeout_s,
            max_attempts=2,
        )
    raise InvalidInputError(f"unsupported blob URL {settings.resolved_blob_url!r}: use file:// or s3://")


def open_metadata_store(settings: Settings) -> SqlMetadataStore:
    """The SQL metadata store at ``settings.resolved_database_url``. A server database must be
    migrated already (SchemaOutdatedError names ``persona-core migrate``); the embedded SQLite
    default upgrades itself on first use. A PostgreSQL pool is bounded by ``db_pool_size`` and
    ``db_max_overflow``."""
    return SqlMetadataStore.open(
        settings.resolved_database_url,
        timeout_s=settings.store_timeout_s,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


def migrate_metadata_store(settings: Settings) -> tuple[str | None, str]:
    """Bring the database at ``settings.resolved_database_url`` to the newest schema (once per
    deploy: ``persona-core migrate``); returns (revision before, revision now). Idempotent."""
    db = Database.connect(settings.resolved_database_url)
    try:
        before = migrate.current_revision(db)
        migrate.upgrade(db)
        return before, migrate.head_revision()
    finally:
        db.close()
