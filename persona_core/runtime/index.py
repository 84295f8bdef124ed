"""The selection index: everything ``select_anchor`` and the refresh/clamp hooks need from a
pack, precomputed once so a lookup is a few dict hits.

It has one serialised form (a small JSON object, see :func:`index_document`) that the disk
cache stores next to the pack, so a fresh process neither parses the full pack JSON nor
sorts anchors. Anchor ids and image refs travel as newline-joined strings: they cannot
contain newlines (their patterns forbid it) and one split is far cheaper than a JSON array
of hundreds of strings.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any, NamedTuple

from persona_core.pack import CameraMode, Expression, PersonaPack, RefreshPolicy
from persona_core.runtime.drift import DriftThresholds

INDEX_FORMAT = 2
# Fixed fallback order when a requested mode has no anchors at all.
MODE_ORDER: tuple[str, ...] = tuple(m.value for m in CameraMode)
EXPRESSIONS: tuple[str, ...] = tuple(e.value for e in Expression)


def index_document(pack: PersonaPack) -> dict[str, Any]:
    """The serialisable selection index of a pack (anchors ordered by quality desc, then id)."""
    ids: list[str] = []
    refs: list[str] = []
    quality: list[float] = []
    mode_of: list[str] = []
    expr_of: list[str] = []
    ready: list[str] = []
    canonical_flag: list[bool] = []
    for camera_mode, anchors in pack.anchor_sets.items():
        for anchor in anchors:
            ids.append(anchor.anchor_id)
            refs.append(anchor.image_ref)
            quality.append(anchor.quality.overall)
            mode_of.append(CameraMode(camera_mode).value)
            expr_of.append(Expression(anchor.metadata.expression_tag).value)
            ready.append(str(talk_readiness(anchor)))
            canonical_flag.append(anchor.canonical)

    def ranked(positions: list[int]) -> list[int]:
        return sorted(positions, key=lambda p: (-quality[p], ids[p]))

    by_emotion: dict[str, dict[str, list[int]]] = {}
    canonical: dict[str, int] = {}
    for mode in MODE_ORDER:
        in_mode = ranked([p for p in range(len(ids)) if mode_of[p] == mode])
        if not in_mode:
            continue
        flagged = [p for p in in_mode if canonical_flag[p]]
        # A mode without a flagged canonical anchor falls back to its best anchor.
        canonical[mode] = flagged[0] if flagged else in_mode[0]
        groups: dict[str, list[int]] = {}
        for p in in_mode:
            groups.setdefault(expr_of[p], []).append(p)
        by_emotion[mode] = groups
    return {
        "format": INDEX_FORMAT,
        "persona_id": pack.persona_id,
        "version": pack.version,
        "content_hash": pack.content_hash,
        "ids": "\n".join(ids),
        "image_refs": "\n".join(refs),
        # Exact float64 bytes as hex: JSON number parsing is the slowest part of a load.
        "quality": _le_hex(quality),
        # One digit per anchor (position in MODE_ORDER / EXPRESSIONS).
        "mode": "".join(str(MODE_ORDER.index(m)) for m in mode_of),
        "expr": "".join(str(EXPRESSIONS.index(e)) for e in expr_of),
        # One digit per anchor: how well it suits a talking turn (talk_readiness).
        "ready": "".join(ready),
        "by_emotion": by_emotion,
        "canonical": canonical,
        "refresh_policy": pack.refresh_policy.model_dump(mode="json"),
        "behavior_policy": pack.behavior_policy.model_dump(mode="json"),
    }


def talk_readiness(anchor: Any) -> int:
    """2 = eyes open and mouth closed, 1 = one of the two, 0 = neither: what a talking-head
    renderer animates from best. A tag the pack does not carry (older packs) counts as met."""
    meta = anchor.metadata
    eyes = meta.eyes_open is None or meta.eyes_open.value
    mouth = meta.mouth_closed is None or meta.mouth_closed.value
    return int(eyes) + int(mouth)


def _le_hex(values: list[float]) -> str:
    arr = array("d", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes().hex()


class AnchorColumns(NamedTuple):
    ids: list[str]
    image_refs: list[str]
    quality: array[float]
    pos: dict[str, int]


class SelectionIndex:
    """Read-only lookup tables of one pack. ``memo`` caches resolved choices (bounded: keys
    are built only from valid modes, emotions and the pack's own anchor ids). The per-anchor
    columns are split out of their strings on first use, so a load that never selects, or a
    select answered from the memo, never pays for them."""

    __slots__ = (
        "_columns",
        "_raw",
        "behavior_policy_doc",
        "by_mode_emotion",
        "canonical",
        "clamp_tables",
        "content_hash",
        "expr_codes",
        "memo",
        "mode_codes",
        "n_anchors",
        "persona_id",
        "ready_codes",
        "refresh_policy_doc",
        "thresholds",
        "version",
    )

    def __init__(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != INDEX_FORMAT:
            raise ValueError(f"unknown selection index format {doc.get('format')!r}")
        self.persona_id: str = doc["persona_id"]
        self.version: int = doc["version"]
        self.content_hash: str | None = doc["content_hash"]
        self.mode_codes: str = doc["mode"]
        self.expr_codes: str = doc["expr"]
        n = self.n_anchors = len(self.mode_codes)
        # Indexes written before the readiness column: every anchor counts as ready.
        self.ready_codes: str = doc.get("ready") or "2" * n
        ids, refs, quality = doc["ids"], doc["image_refs"], doc["quality"]
        rows = (ids.count("\n") + 1 if ids else 0, refs.count("\n") + 1 if refs else 0, len(quality) // 16)
        if rows != (n, n, n) or len(self.expr_codes) != n or len(self.ready_codes) != n:
            raise ValueError("selection index columns differ in length")
        self._raw: tuple[str, str, str] | None = (ids, refs, quality)
        self._columns: AnchorColumns | None = None
        self.canonical: dict[str, int] = doc["canonical"]
        self.by_mode_emotion: dict[tuple[str, str], list[int]] = {
            (mode, emo): lst for mode, groups in doc["by_emotion"].items() for emo, lst in groups.items()
        }
        self.refresh_policy_doc: dict[str, Any] = doc["refresh_policy"]
        self.behavior_policy_doc: dict[str, Any] = doc["behavior_policy"]
        rp = self.refresh_policy_doc
        self.thresholds = DriftThresholds(
            identity_fail=rp["identity_drift_fail"],
            identity_warn=rp["identity_drift_warn"],
            bg_fail=rp["bg_drift_fail"],
            flicker_fail=rp["flicker_fail"],
            refresh_every_turns=rp["refresh_every_turns"],
        )
        self.memo: dict[tuple[Any, ...], Any] = {}
        self.clamp_tables: Any = None  # compiled on the first clamp (runtime.clamp.ClampTables)

    def columns(self) -> AnchorColumns:
        """Anchor ids, image refs and qualities by position, and position by anchor id."""
        cols = self._columns
        if cols is None:
            ids_raw, refs_raw, quality_hex = self._raw or ("", "", "")
            ids = ids_raw.split("\n") if ids_raw else []
            quality = array("d", bytes.fromhex(quality_hex))
            if sys.byteorder != "little":
                quality.byteswap()
            refs = refs_raw.split("\n") if refs_raw else []
            # Racing threads build equal columns; whichever lands last wins, harmlessly.
            cols = self._columns = AnchorColumns(
                ids, refs, quality, dict(zip(ids, range(len(ids)), strict=True))
            )
        return cols

    @classmethod
    def from_pack(cls, pack: PersonaPack) -> SelectionIndex:
        return cls(index_document(pack))

    def mode_of(self, p: int) -> str:
        return MODE_ORDER[int(self.mode_codes[p])]

    def expr_of(self, p: int) -> str:
        return EXPRESSIONS[int(self.expr_codes[p])]

    def readiness_of(self, p: int) -> int:
        return int(self.ready_codes[p])

    def refresh_policy(self) -> RefreshPolicy:
        return RefreshPolicy.model_validate(self.refresh_policy_doc)
