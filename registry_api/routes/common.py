"""Shared pieces of route declarations."""

from __future__ import annotations

from typing import Any

from registry_api.errors import PROBLEM_JSON
from registry_api.schemas import Problem


def PROBLEMS(*statuses: int) -> dict[int | str, Any]:  # noqa: N802 - reads like a constant
    """OpenAPI ``responses`` entries: these statuses answer with a problem document."""
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for s in statuses
    }
