"""Committed generated files (JSON Schema, OpenAPI): one way to rewrite or check them."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, text: str, make_target: str, argv: list[str] | None = None) -> None:
    """Write ``text`` to ``path``; with ``--check`` in argv, exit non-zero when it differs."""
    if "--check" in (sys.argv if argv is None else argv):
        if not path.is_file() or path.read_text() != text:
            sys.exit(f"{path} is stale: run `make {make_target}`")
        return
    path.write_text(text)
    print(f"wrote {path}")
