"""Where a version came from, as ``versions`` and ``rebuild`` say it: an upload, a rebuild of
another version (with the thresholds it was asked for, and whether its pack came out the same),
or an import from a ``.personapack`` archive (whose row times are the import's)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from persona_core.errors import InvalidVersionInputsError
from persona_core.store.base import VersionRecord
from persona_core.version_inputs import ImportedInputs, inputs_of


def origin_of(record: VersionRecord, versions: Mapping[int, VersionRecord]) -> dict[str, Any]:
    """``record``'s origin as a JSON-ready document; ``versions`` are its persona's, by number.
    A version whose inputs are gone (erased) has none."""
    if not record.inputs:
        return {"kind": "none"}
    try:
        inputs = inputs_of(record)
    except InvalidVersionInputsError as exc:
        return {"kind": "unreadable", "problem": str(exc)}
    if isinstance(inputs, ImportedInputs):
        src = inputs.imported_from
        return {"kind": "import", "persona_id": src.persona_id, "version": src.version,
                "content_hash": src.content_hash, "built_at": src.built_at,
                "note": "created and published are the times of the import"}
    if inputs.rebuilt_from is None:
        return {"kind": "upload"}
    source = versions.get(inputs.rebuilt_from.version)
    same = (record.content_hash is not None and source is not None
            and source.content_hash == record.content_hash)
    return {"kind": "rebuild", "version": inputs.rebuilt_from.version,
            "thresholds": inputs.rebuilt_from.thresholds,
            "same_content_as": source.version if same and source is not None else None}


def origin_text(origin: Mapping[str, Any]) -> str:
    """The origin in one table cell."""
    kind = origin["kind"]
    if kind == "import":
        built = f", built {origin['built_at']}" if origin.get("built_at") else ""
        return f"import of {origin['persona_id']} v{origin['version']}{built}; times are the import's"
    if kind == "rebuild":
        thresholds = origin.get("thresholds")
        text = f"rebuild of v{origin['version']}, " + (
            f"thresholds {json.dumps(thresholds, sort_keys=True)}" if thresholds else "default thresholds")
        if origin.get("same_content_as") is not None:
            text += f"; same content as v{origin['same_content_as']}"
        return text
    return {"upload": "upload", "none": "-"}.get(kind, "?")
