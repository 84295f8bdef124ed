"""Settings for every persona-core process, in one place (environment prefix ``PERSONA_``).

The embedded default needs nothing: a SQLite file and a blob folder under ``home``.
Set ``PERSONA_DATABASE_URL`` (``postgresql+psycopg://...``) and ``PERSONA_BLOB_URL``
(``s3://bucket`` with ``PERSONA_S3_ENDPOINT_URL`` etc.) for real use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SIGNING_SECRET = "dev-only-signing-secret-change-me"  # noqa: S105 - refused outside dev
MIB = 1024 * 1024
LEASE_TTL_HEARTBEATS = 3
ERASURE_LOOKS_PER_WAIT = 4


class ModelSettings(BaseSettings):
    """Which models a build uses and where their files are: the part of the settings the model
    registry and the runtime's ``DriftMeter`` read, so a renderer's process needs none of the
    stores' settings to be valid. Every builder door (``persona-core build``/``rebuild``/``qc``,
    sensor-launched runs, the Dagster ``models`` resource) takes its defaults from here."""

    model_config = SettingsConfigDict(env_prefix="PERSONA_", extra="ignore")

    # Where weight files are looked up first (InsightFace packs, exported OpenCLIP / ECAPA ONNX).
    model_dir: Path | None = None
    # Derived files (exported or pruned ONNX, downloads) of models not from a model dir (those
    # go to <model dir>/.cache); default $XDG_CACHE_HOME/persona-core/models (~/.cache/...).
    model_cache: Path | None = None
    # onnxruntime threads per model call; default: every core, at most 8.
    model_threads: int | None = Field(default=None, gt=0)
    # Registry names ("" = the task's offline default; expression "" = from the face mesh).
    detector_model: str = ""
    identity_model: str = ""
    style_model: str = ""
    voice_model: str = ""
    expression_model: str = ""
    # A model whose licence forbids commercial use (InsightFace packs, FER-2013) loads only with
    # this set; the pack records the opt-in next to the model.
    allow_noncommercial: bool = False

    def model_cache_for(self, model_dir: Path | None) -> Path:
        """Where derived files of models loaded from ``model_dir`` go: ``model_dir/.cache``
        when there is one, else ``model_cache``, else the user's cache folder."""
        if model_dir is not None:
            return model_dir / ".cache"
        if self.model_cache is not None:
            return self.model_cache
        base = os.environ.get("XDG_CACHE_HOME", "") or Path.home() / ".cache"
        return Path(base) / "persona-core" / "models"


class LogSettings(BaseSettings):
    """How persona-core logs (``persona_core.logging.configure_logging``): read on its own, so
    logging is set up before, and whatever, the other settings say."""

    model_config = SettingsConfigDict(env_prefix="PERSONA_", extra="ignore")

    # JSON lines for log shippers.
    log_json: bool = False
    # The root level; the CLI shows WARNING and up unless this is set (or --verbose is given).
    log_level: str = "INFO"


class Settings(ModelSettings, LogSettings):
    model_config = SettingsConfigDict(env_prefix="PERSONA_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    home: Path = Path(".persona")
    database_url: str | None = None
    blob_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    # The S3 endpoint as the registry's clients reach it, used only to sign asset URLs: the
    # store reads and writes through s3_endpoint_url (e.g. http://minio:9000, a name only the
    # deployment's own network resolves) and hands out URLs for this host (e.g. a published
    # port or a public load balancer). Unset: URLs name s3_endpoint_url.
    s3_public_endpoint_url: str | None = None
    signing_secret: SecretStr = SecretStr(DEV_SIGNING_SECRET)
    public_base_url: str = "http://127.0.0.1:8000"
    cache_dir: Path | None = None
    # The Dagster instance (run, event and schedule storage) that `make dagster`, the CLI and
    # the registry's upload sensor share; default: the DAGSTER_HOME the platform sets on a
    # deployed host (resolved_dagster_home), else ``home/dagster``.
    dagster_home: Path | None = None
    # A build holds a lease on its version: a heartbeat every lease_heartbeat_s; a `building`
    # version whose heartbeat is older than lease_ttl_s (or whose process is gone) is failed.
    lease_heartbeat_s: float = Field(default=5.0, gt=0)
    lease_ttl_s: float = Field(default=30.0, gt=0)
    # A `pending` version no build has claimed after this long (no daemon, a lost manifest) is
    # failed with "no build service picked this up"; it can be re-run.
    pending_timeout_s: float = Field(default=30 * 60, gt=0)
    # Retention (persona-core gc, the daily Dagster schedule): versions that never published are
    # erased after retention_days; a blob or object nothing holds is deleted once it is older
    # than gc_grace_s (longer than any upload takes, so a blob an upload is reusing survives).
    retention_days: float = Field(default=30.0, gt=0)
    gc_grace_s: float = Field(default=24 * 3600.0, ge=0)
    # A busy registry worker looks for new erasures this often and drops what it caches of the
    # erased personas; it answers from memory only within erasure_wait_s of a look, and an
    # erasure waits erasure_wait_s after its start before it deletes bytes and returns.
    erasure_poll_s: float = Field(default=0.25, gt=0, le=10)
    # Upload limits, the same for every door (HTTP, gRPC, the CLI): persona_core.uploads.
    max_upload_file_bytes: int = Field(default=25 * MIB, gt=0)
    max_upload_files: int = Field(default=32, gt=0)
    # Files are read and stored one at a time; this bounds what one upload puts in the stores.
    max_upload_total_bytes: int = Field(default=256 * MIB, gt=0)
    max_manifest_bytes: int = Field(default=256 * 1024, gt=0)
    # Uploads one registry worker takes at a time (HTTP and gRPC together); one more is refused
    # at once with 503 uploads_busy and Retry-After (registry_api.upload_slots).
    max_concurrent_uploads: int = Field(default=4, gt=0)
    # Width x height read from an image's header before decoding: a small file can claim
    # gigapixels, and decoding allocates 3 bytes per pixel (40 MP = 120 MB).
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # A persona's metadata, as compact JSON: it is returned by every GET of the persona.
    max_metadata_bytes: int = Field(default=64 * 1024, gt=0)
    # PostgreSQL connections one process holds: db_pool_size kept open, up to db_max_overflow
    # more under load, after which a call waits (store_timeout_s) for one to come back.
    # `serve --workers N` (N > 1) runs N + 1 processes (the workers and the one serving gRPC);
    # the server's max_connections must cover processes x (db_pool_size + db_max_overflow).
    db_pool_size: int = Field(default=5, gt=0)
    db_max_overflow: int = Field(default=5, ge=0)
    # How long one database or S3 call may take before the store answers "unavailable";
    # shorter than a client's patience, so a hung server gives a 503 instead of a hang.
    store_timeout_s: float = Field(default=3.0, gt=0)
    # Webhooks (persona_core.webhooks, docs/webhooks.md). URLs that name or resolve to loopback,
    # private, link-local or other non-public addresses are refused unless this allows them.
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # A failed delivery is tried again after base x 2^(attempt-1) seconds, at most max apart,
    # and abandoned after max_attempts tries (the defaults span about 8.5 hours).
    webhook_retry_base_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=18, gt=0)
    # A subscription is disabled after this many failed tries in a row (any of its deliveries).
    webhook_disable_after: int = Field(default=100, gt=0)
    # How often the dispatcher looks for new events, and how long its lease lasts unrenewed.
    webhook_poll_s: float = Field(default=0.1, gt=0)
    webhook_lease_ttl_s: float = Field(default=10.0, gt=0)
    # Whether `persona-core serve` dispatches webhooks itself (one worker does, under the lease).
    webhook_dispatch: bool = True

    @property
    def erasure_wait_s(self) -> float:
        """How long after its start an erasure waits before it deletes bytes and returns: by
        then no registry worker answers the subject from memory. Several looks long, so a look
        that a loaded worker's threads slow down still lands inside it."""
        return ERASURE_LOOKS_PER_WAIT * self.erasure_poll_s

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        # A TTL under a few heartbeats fails live builds between two beats (and a store hiccup).
        if self.lease_ttl_s < LEASE_TTL_HEARTBEATS * self.lease_heartbeat_s:
            raise ValueError(
                f"PERSONA_LEASE_TTL_S ({self.lease_ttl_s:g} s) must be at least {LEASE_TTL_HEARTBEATS} x "
                f"PERSONA_LEASE_HEARTBEAT_S ({self.lease_heartbeat_s:g} s), or live builds are failed as dead"
            )
        return self

    @model_validator(mode="after")
    def _no_default_secrets_in_prod(self) -> Settings:
        if self.env == "prod" and self.signing_secret.get_secret_value() == DEV_SIGNING_SECRET:
            raise ValueError("PERSONA_SIGNING_SECRET must be set outside dev")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'persona.db').resolve()}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{(self.home / 'blobs').resolve()}"

    @property
    def resolved_dagster_home(self) -> Path:
        """``dagster_home``, else Dagster's own ``DAGSTER_HOME`` when it is set, else
        ``home/dagster``. On a deployed host the platform sets DAGSTER_HOME for the webserver,
        the daemon and the code server (deploy/Dockerfile, deploy/compose.yaml): a CLI started
        there records its builds in that instance, where the UI shows them, and ``erase``
        purges that instance, not a SQLite folder of its own under ``home``."""
        platform = os.environ.get("DAGSTER_HOME", "")
        return (self.dagster_home or (Path(platform) if platform else self.home / "dagster")).resolve()

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.home / "cache"
