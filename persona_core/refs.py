"""Content-addressed blob references.

A ref is ``sha256:<64 lowercase hex>``; an embedding row inside a matrix blob is
``sha256:<hex>#<row>``. Embeddings of one kind live in one ``float32`` matrix blob so a
pack with hundreds of anchors costs a handful of objects, not hundreds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from persona_core.errors import InvalidInputError

REF_PATTERN = r"^sha256:[0-9a-f]{64}(#[0-9]+)?$"
_REF_RE = re.compile(REF_PATTERN)


@dataclass(frozen=True, slots=True)
class Ref:
    digest: str
    row: int | None = None

    def __str__(self) -> str:
        return f"sha256:{self.digest}" if self.row is None else f"sha256:{self.digest}#{self.row}"

    @property
    def blob(self) -> str:
        """The ref of the whole blob (row dropped)."""
        return f"sha256:{self.digest}"


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def ref_for(data: bytes) -> str:
    """The content-addressed ref (``sha256:<hex>``) that names ``data``."""
    return f"sha256:{sha256_hex(data)}"


def row_ref(blob_ref: str, row: int) -> str:
    """The ref of one row of a matrix blob: ``sha256:<hex>#<row>``."""
    return f"{parse_ref(blob_ref).blob}#{row}"


def parse_ref(ref: str) -> Ref:
    """Split a ref into digest and optional row; InvalidInputError for anything else."""
    if not isinstance(ref, str) or not _REF_RE.fullmatch(ref):
        raise InvalidInputError(f"not a blob ref: {ref!r} (expected sha256:<64 hex>[#row])")
    body = ref[len("sha256:") :]
    digest, _, row = body.partition("#")
    return Ref(digest, int(row) if row else None)


def find_refs(node: Any) -> Iterator[str]:
    """Every string that looks like a blob ref, anywhere in a JSON-like document: stricter
    than a pack's own ref fields, so a ref tucked into provenance config is verified too."""
    if isinstance(node, dict):
        for value in node.values():
            yield from find_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from find_refs(item)
    elif isinstance(node, str) and _REF_RE.fullmatch(node):
        yield node
