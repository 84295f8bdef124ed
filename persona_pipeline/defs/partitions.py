"""One dynamic partition per persona version (key ``<persona_id>.v<version>``)."""

from __future__ import annotations

import dagster as dg

persona_versions = dg.DynamicPartitionsDefinition(name="persona_versions")
