"""Helpers for the Dagster erasure tests: find bytes anywhere in an instance's folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def survivors(root: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """needle name -> the files under ``root`` whose raw bytes (SQLite pages, write-ahead logs,
    compute logs, pickles) contain it; only needles found somewhere are listed."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def slices(text: str, width: int = 48, every: int = 997) -> dict[str, bytes]:
    """Short pieces of a long text, spread over it: a long value is stored across SQLite
    overflow pages, so a long needle could straddle a page boundary and never match."""
    return {f"@{i}": text[i : i + width].encode() for i in range(0, max(len(text) - width, 1), every)}


def named(prefix: str, values: Iterable[str]) -> dict[str, bytes]:
    return {f"{prefix}{value}": value.encode() for value in values}
