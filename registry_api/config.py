"""The registry's settings: persona-core's ``Settings`` plus the API's own limits.

Environment prefix ``PERSONA_`` like the rest of persona-core, so one ``.env`` serves the
pipeline and the registry. Default secrets are refused outside dev by the parent class.
"""

from __future__ import annotations

from pydantic import Field

from persona_core.settings import Settings

MIB = 1024 * 1024


class ApiSettings(Settings):
    max_upload_file_bytes: int = Field(default=25 * MIB, gt=0)
    max_upload_files: int = Field(default=32, gt=0)
    # Accepted files are handed to ingest as bytes, so this bounds one upload's memory.
    max_upload_total_bytes: int = Field(default=256 * MIB, gt=0)
    # Form fields besides files: the manifest and a little slack for clients that send extras.
    max_upload_fields: int = Field(default=8, gt=0)
    max_manifest_bytes: int = Field(default=256 * 1024, gt=0)
    # Width x height read from an image's header before decoding: a small file can claim
    # gigapixels, and decoding allocates 3 bytes per pixel (40 MP = 120 MB).
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # A revoked key keeps working for at most this long in a running process (see auth.py).
    api_key_cache_ttl_s: float = Field(default=30.0, ge=0)
    # How long `latest` may keep pointing at the previous newest version after a publish.
    latest_cache_ttl_s: float = Field(default=1.0, ge=0)
    pack_cache_max_entries: int = Field(default=256, gt=0)
    resolve_bytes_max: int = Field(default=16 * MIB, gt=0)
    default_page_size: int = Field(default=50, gt=0, le=500)
    grpc_port: int = Field(default=0, ge=0, le=65535)

    @property
    def max_request_bytes(self) -> int:
        """Hard cap on one upload request body: all files, the manifest, and form overhead."""
        return self.max_upload_total_bytes + self.max_manifest_bytes + MIB
