"""The committed OpenAPI snapshot, ``schemas/openapi.json``.

``python -m registry_api.openapi`` rewrites it from the app; ``--check`` exits non-zero when
the app's schema and the snapshot differ (tests/api/test_api_openapi.py does the same).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from persona_core.snapshots import write_or_check
from persona_core.store.local import LocalBlobStore
from persona_core.store.metadata import SqlMetadataStore
from registry_api.config import ApiSettings
from registry_api.main import create_app

SNAPSHOT = Path(__file__).resolve().parent.parent / "schemas" / "openapi.json"


def current_schema() -> dict[str, Any]:
    """The app's OpenAPI document; built over throwaway in-memory stores (no settings read)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = ApiSettings(env="dev", home=Path(tmp))
        app = create_app(
            settings,
            metadata=SqlMetadataStore.open("sqlite://"),
            blobs=LocalBlobStore(Path(tmp) / "blobs", b"unused", settings.public_base_url),
        )
        return app.openapi()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    write_or_check(SNAPSHOT, render(current_schema()), "openapi")


if __name__ == "__main__":
    main()
