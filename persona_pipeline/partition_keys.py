"""Partition keys for persona versions: ``<persona_id>.v<version>`` (persona ids hold no dots,
so the key splits back unambiguously). No Dagster import: the API and CLI use these too."""

from __future__ import annotations

import re

from persona_core.errors import InvalidInputError
from persona_core.pack import PERSONA_ID_BODY

# The dynamic partitions' names (persona_pipeline.defs.partitions): one per version, one per persona.
VERSION_PARTITIONS = "persona_versions"
PERSONA_PARTITIONS = "personas"

_KEY_RE = re.compile(rf"^({PERSONA_ID_BODY})\.v([1-9][0-9]*)$")


def partition_key(persona_id: str, version: int) -> str:
    key = f"{persona_id}.v{int(version)}"
    if not _KEY_RE.fullmatch(key):
        raise InvalidInputError(f"cannot make a partition key from persona {persona_id!r} v{version}")
    return key


def parse_partition_key(key: str) -> tuple[str, int]:
    """(persona_id, version) from ``<persona_id>.v<version>``; InvalidInputError otherwise."""
    match = _KEY_RE.fullmatch(key or "")
    if match is None:
        raise InvalidInputError(f"partition key {key!r} is not <persona_id>.v<version>")
    return match.group(1), int(match.group(2))
