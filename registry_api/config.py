"""The registry's settings: persona-core's ``Settings`` plus the API's own limits.

Environment prefix ``PERSONA_`` like the rest of persona-core, so one ``.env`` serves the
pipeline and the registry. Default secrets are refused outside dev by the parent class.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from persona_core.settings import MIB, Settings


class ApiSettings(Settings):
    # The upload limits themselves (max_upload_*, max_image_pixels, ...) are persona-core's
    # Settings: the CLI meets the same ones.
    # Form fields besides files: the manifest and a little slack for clients that send extras.
    max_upload_fields: int = Field(default=8, gt=0)
    # A revoked key keeps working for at most this long in a running process (see auth.py).
    api_key_cache_ttl_s: float = Field(default=30.0, ge=0)
    # How long `latest` may keep pointing at the previous newest version after a publish.
    latest_cache_ttl_s: float = Field(default=1.0, ge=0)
    pack_cache_max_entries: int = Field(default=256, gt=0)
    resolve_bytes_max: int = Field(default=16 * MIB, gt=0)
    default_page_size: int = Field(default=50, gt=0, le=500)
    grpc_port: int = Field(default=0, ge=0, le=65535)

    # Serving limits (docs/registry.md, "Serving limits"); per HTTP worker process.
    # From a connection's (or a keep-alive request's) first byte to its last header line.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    # A request body must bring at least 1 KiB in every window this long (while it is read).
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    # Open HTTP connections; never more than the open-file limit leaves room for. At the cap
    # the oldest connection still sending its headers (or idle) is closed for the new one.
    http_max_connections: int = Field(default=4096, gt=0)
    # gRPC: reads and uploads have their own threads, so uploads never queue reads.
    grpc_read_workers: int = Field(default=8, gt=0)
    grpc_upload_workers: int = Field(default=2, gt=0)
    # Wrong API keys a client IP may present per window before it is answered 429.
    auth_failure_limit: int = Field(default=20, gt=0)
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    # TLS on the gRPC port: a PEM certificate (chain) and its private key, both or neither
    # (PERSONA_GRPC_TLS_CERT / PERSONA_GRPC_TLS_KEY); without them the port is plaintext.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    # How often grpc.health.v1 asks the database and the blob store whether they answer.
    grpc_health_interval_s: float = Field(default=5.0, gt=0)
    # /docs, /redoc and /openapi.json, served without a key (the API's shape is no secret: the
    # same document is schemas/openapi.json). Off by default: every other route needs a key, and
    # /docs and /redoc load their scripts from a CDN, so they are blank where there is no internet.
    api_docs: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError(
                "PERSONA_GRPC_TLS_CERT and PERSONA_GRPC_TLS_KEY go together: set both or neither"
            )
        return self

    @property
    def max_request_bytes(self) -> int:
        """Hard cap on one upload request body: all files, the manifest, and form overhead."""
        return self.max_upload_total_bytes + self.max_manifest_bytes + MIB
