"""Validation of pack documents against ``schemas/persona_pack.schema.json``.

The schema file is generated from :mod:`persona_core.pack` (``make schema``) and committed;
``tests/unit/test_schema.py`` fails when the two drift apart.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from persona_core.errors import PackValidationError
from persona_core.pack import PersonaPack
from persona_core.snapshots import write_or_check

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "persona_pack.schema.json"
SCHEMA_ID = "https://persona-core.dev/schemas/persona_pack.schema.json"


def generated_schema() -> dict[str, Any]:
    schema = PersonaPack.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


@cache
def _validator() -> Any:
    # A wheel install has no top-level schemas/ folder; the generated schema is the same
    # document (tests/unit/test_schema.py keeps them equal).
    schema = json.loads(SCHEMA_PATH.read_text()) if SCHEMA_PATH.is_file() else generated_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_pack_document(doc: Any) -> None:
    """Raise :class:`PackValidationError` naming the first offending field, if any."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), e.json_path))
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(root)"
        raise PackValidationError(err.message, field=field)


def main() -> None:
    write_or_check(SCHEMA_PATH, json.dumps(generated_schema(), indent=2, sort_keys=True) + "\n", "schema")


if __name__ == "__main__":
    main()
