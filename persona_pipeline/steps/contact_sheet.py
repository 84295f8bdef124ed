"""Contact sheet: one PNG that shows a build's anchors per camera mode, with their tags and
scores under each thumbnail, why each mode's canonical anchor was chosen, and the inputs the
build rejected with the reason.

Pure OpenCV (no dagster): the ``anchor_sets`` asset embeds the PNG in its metadata as
markdown with a ``data:image/png;base64,...`` image so data ops see the result in the UI.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from persona_core.errors import InvalidInputError

THUMB = 160
COLUMNS = 6
PAD = 10
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCALE = 0.4
_LINE_H = 15
_HEADER_H = 30
_BG = (245, 245, 245)
_INK = (30, 30, 30)
_MUTED = (110, 110, 110)
_REJECT = (20, 20, 170)  # BGR: dark red
_NOTE = (40, 100, 20)  # BGR: dark green
MAX_LABEL_LINES = 6

AnchorTile = tuple[np.ndarray, Sequence[str]]


def render_contact_sheet(
    anchors_by_mode: Mapping[str, Sequence[AnchorTile]],
    rejected: Sequence[tuple[str, str]] = (),
    *,
    title: str = "",
    columns: int = COLUMNS,
    notes: Mapping[str, str] | None = None,
) -> bytes:
    """PNG bytes of a grid per mode (thumbnail + label lines each) and a rejected-inputs panel.

    ``anchors_by_mode`` maps a camera mode to ``(image_bgr, label_lines)`` pairs in rank
    order; ``notes`` a mode to a text shown under its heading, wrapped to the sheet's width
    (why its canonical anchor was chosen); ``rejected`` lists ``(input name, reason)``. Raises
    InvalidInputError for an image that is not an HxW or HxWx3/4 uint8 array.
    """
    if columns < 1:
        raise InvalidInputError("columns must be >= 1")
    width = PAD + columns * (THUMB + PAD)
    text_chars = _chars_that_fit(THUMB)
    wide_chars = _chars_that_fit(width - 2 * PAD)

    bands: list[np.ndarray] = []
    if title:
        bands.append(_text_band([_ascii(title)], width, _INK, scale=0.6, line_h=24))
    for mode, tiles in anchors_by_mode.items():
        bands.append(_text_band([f"{_ascii(mode)}  ({len(tiles)} anchors)"], width, _INK, scale=0.55))
        note = (notes or {}).get(mode)
        if note:
            bands.append(_text_band(textwrap.wrap(_ascii(note), wide_chars), width, _NOTE))
        if not tiles:
            bands.append(_text_band(["no usable anchors"], width, _REJECT))
            continue
        rows = (len(tiles) + columns - 1) // columns
        label_h = min(MAX_LABEL_LINES, max(len(lines) for _, lines in tiles)) * _LINE_H + 4
        grid = np.full((rows * (THUMB + label_h + PAD), width, 3), _BG, dtype=np.uint8)
        for i, (image, lines) in enumerate(tiles):
            r, c = divmod(i, columns)
            x = PAD + c * (THUMB + PAD)
            y = r * (THUMB + label_h + PAD)
            grid[y : y + THUMB, x : x + THUMB] = _thumbnail(image)
            for j, line in enumerate(list(lines)[:MAX_LABEL_LINES]):
                _put(grid, _clip(_ascii(line), text_chars), (x, y + THUMB + (j + 1) * _LINE_H - 3), _INK)
        bands.append(grid)

    bands.append(_text_band([f"Rejected inputs ({len(rejected)})"], width, _INK, scale=0.55))
    if rejected:
        lines = [_clip(f"{_ascii(name)}: {_ascii(reason)}", wide_chars) for name, reason in rejected]
        bands.append(_text_band(lines, width, _REJECT))
    else:
        bands.append(_text_band(["none"], width, _MUTED))

    sheet = np.vstack(bands)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:  # pragma: no cover - cv2 only fails here on an impossible shape
        raise InvalidInputError("could not encode the contact sheet")
    return buf.tobytes()


def contact_sheet_markdown(png: bytes, alt: str = "contact sheet") -> str:
    """Markdown showing the PNG inline (for Dagster's MetadataValue.md)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _thumbnail(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InvalidInputError("contact sheet images must be uint8 HxW or HxWxC arrays")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] != 3:
        raise InvalidInputError(f"contact sheet images need 1, 3 or 4 channels, got {image.shape[2]}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise InvalidInputError("contact sheet image is empty")
    # Letterbox into a square so faces keep their proportions.
    scale = THUMB / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (nw, nh), interpolation=interp)
    tile = np.full((THUMB, THUMB, 3), 255, dtype=np.uint8)
    oy, ox = (THUMB - nh) // 2, (THUMB - nw) // 2
    tile[oy : oy + nh, ox : ox + nw] = small
    return tile


def _text_band(
    lines: Sequence[str],
    width: int,
    color: tuple[int, int, int],
    *,
    scale: float = _SCALE,
    line_h: int = _LINE_H,
) -> np.ndarray:
    top = _HEADER_H - line_h if scale > _SCALE else 0
    band = np.full((top + line_h * len(lines) + PAD // 2, width, 3), _BG, dtype=np.uint8)
    for i, line in enumerate(lines):
        _put(band, line, (PAD, top + (i + 1) * line_h - 3), color, scale)
    return band


def _put(
    img: np.ndarray, text: str, xy: tuple[int, int], color: tuple[int, int, int], scale: float = _SCALE
) -> None:
    cv2.putText(img, text, xy, _FONT, scale, color, 1, cv2.LINE_AA)


def _chars_that_fit(px: int) -> int:
    (char_w, _), _ = cv2.getTextSize("M", _FONT, _SCALE, 1)
    return max(4, px // max(1, char_w - 1))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _ascii(text: str) -> str:
    # Hershey fonts draw ASCII only; anything else would come out as '?' boxes.
    return str(text).encode("ascii", "replace").decode("ascii")
