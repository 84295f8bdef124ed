"""Shared pieces of route declarations."""

from __future__ import annotations

from typing import Any

from registry_api.errors import PROBLEM_JSON
from registry_api.schemas import GoneProblem, Problem


def PROBLEMS(*statuses: int) -> dict[int | str, Any]:  # noqa: N802 - reads like a constant
    """OpenAPI ``responses`` entries: these statuses answer with a problem document (410 with
    the erasure's times)."""
    return {s: _problem(GoneProblem if s == 410 else Problem) for s in statuses}


def _problem(model: type[Problem]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"model": model, "content": {PROBLEM_JSON: {"schema": ref}}}
