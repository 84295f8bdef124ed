"""The contact sheets a persona's builds showed in the Dagster UI (the ``anchor_sets`` asset's
``contact_sheet`` metadata: face thumbnails as a ``data:image/png;base64`` image), read back as
PNG bytes: what the erasure verifier looks for in the instance after an erasure."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

import dagster as dg

from persona_core.settings import Settings
from persona_pipeline.instance import project_instance
from persona_pipeline.partition_keys import partition_key

__all__ = ["contact_sheets", "contact_sheets_for"]

ASSET = dg.AssetKey("anchor_sets")
_DATA_URI = "data:image/png;base64,"
_PAGE = 100


def contact_sheets(instance: dg.DagsterInstance, persona_id: str, versions: Iterable[int]) -> list[bytes]:
    """Every contact sheet the instance holds for the persona's ``versions`` (each build's)."""
    keys = [partition_key(persona_id, v) for v in versions]
    if not keys:
        return []
    sheets: list[bytes] = []
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ASSET, asset_partitions=keys), limit=_PAGE, cursor=cursor
        )
        for record in page.records:
            materialization = record.asset_materialization
            value = materialization.metadata.get("contact_sheet") if materialization else None
            png = _png(getattr(value, "value", None))
            if png is not None:
                sheets.append(png)
        if not page.has_more:
            return sheets
        cursor = page.cursor


def contact_sheets_for(settings: Settings, persona_id: str, versions: Iterable[int]) -> list[bytes]:
    """:func:`contact_sheets` of the project's instance; none when Dagster never ran here."""
    if not settings.resolved_dagster_home.exists():
        return []
    instance = project_instance(settings)
    try:
        return contact_sheets(instance, persona_id, versions)
    finally:
        instance.dispose()


def _png(markdown: object) -> bytes | None:
    if not isinstance(markdown, str) or _DATA_URI not in markdown:
        return None
    encoded = markdown.split(_DATA_URI, 1)[1].split(")", 1)[0]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
