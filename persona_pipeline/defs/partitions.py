"""One dynamic partition per persona version (key ``<persona_id>.v<version>``), and one per
persona for the rebuild job (a backfill over personas rebuilds each one's newest version)."""

from __future__ import annotations

import dagster as dg

persona_versions = dg.DynamicPartitionsDefinition(name="persona_versions")
personas = dg.DynamicPartitionsDefinition(name="personas")
