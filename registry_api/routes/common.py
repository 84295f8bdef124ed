"""Shared pieces of route declarations: problem responses and the typed path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from fastapi.exceptions import RequestValidationError

from persona_core.pack import PERSONA_ID_PATTERN, PERSONA_ID_RE
from persona_core.store.aliases import ALIAS_PATTERN
from registry_api.errors import PROBLEM_JSON
from registry_api.schemas import GoneProblem, Problem
from registry_api.service import VERSION_SPEC_PATTERN

PERSONA_ID_DOC = "Lowercase letters, digits, `_` and `-`, at most 63; anything else is 422 `invalid_name`."
VERSION_DOC = "A version number, `latest`, or an alias (`live`); a malformed one is 400 `invalid_input`."
ALIAS_NAME_DOC = "The alias (`live`, `staging`); `latest` is reserved."

# A persona id that breaks the pattern never reaches a store: 422 invalid_name (main.py names it).
PersonaIdPath = Annotated[str, Path(pattern=PERSONA_ID_PATTERN, description=PERSONA_ID_DOC)]
# Versions and alias names keep the service's own typed 400s; the pattern is documented only.
VersionPath = Annotated[
    str, Path(description=VERSION_DOC, json_schema_extra={"pattern": VERSION_SPEC_PATTERN})
]
AliasNamePath = Annotated[
    str, Path(description=ALIAS_NAME_DOC, json_schema_extra={"pattern": f"^{ALIAS_PATTERN}$"})
]


def PROBLEMS(*statuses: int) -> dict[int | str, Any]:  # noqa: N802 - reads like a constant
    """OpenAPI ``responses`` entries: these statuses answer with a problem document (410 with
    the erasure's times)."""
    return {s: _problem(GoneProblem if s == 410 else Problem) for s in statuses}


def check_persona_id_path(persona_id: str) -> None:
    """For routes that read their path themselves: the 422 ``PersonaIdPath`` gives."""
    if PERSONA_ID_RE.fullmatch(persona_id) is None:
        error = {
            "type": "string_pattern_mismatch",
            "loc": ("path", "persona_id"),
            "msg": f"String should match pattern '{PERSONA_ID_PATTERN}'",
            "input": persona_id,
        }
        raise RequestValidationError([error])


def _problem(model: type[Problem]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"model": model, "content": {PROBLEM_JSON: {"schema": ref}}}
