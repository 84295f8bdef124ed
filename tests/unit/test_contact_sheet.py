"""Contact sheet: anchors per mode with their labels, and the rejected inputs, in one PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from persona_core.errors import InvalidInputError
from persona_pipeline.steps.contact_sheet import (
    THUMB,
    contact_sheet_markdown,
    render_contact_sheet,
)

FACES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"


def _photo(name: str) -> np.ndarray:
    img = cv2.imread(str(FACES / name))
    assert img is not None
    return img


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_sheet_shows_each_photo_and_rejections(tmp_path: Path) -> None:
    """Every anchor's thumbnail lands in the grid; the rejected panel is drawn in red."""
    photos = {
        "A_SELFIE": [(_photo("obama.jpg"), ["neutral / normal", "q 0.91 id 0.88"]),
                     (_photo("obama1.jpg"), ["happy / dim", "q 0.72 id 0.81"])],
        "B_MIRROR": [(_photo("obama2.jpg"), ["neutral / bright", "q 0.80 id 0.79"])],
        "C_CUTAWAY": [],
    }
    rejected = [("two_people.jpg", "2 faces in frame"), ("corrupt.jpg", "not a decodable image")]
    png = render_contact_sheet(photos, rejected, title="obama v1")
    sheet = _decode(png)
    (tmp_path / "sheet.png").write_bytes(png)

    assert sheet.shape[1] >= 6 * THUMB
    # The first thumbnail region is the letterboxed photo, not the flat background.
    first = sheet[sheet.shape[0] // 100 :, :][:, 10 : 10 + THUMB]
    assert float(first.std()) > 20
    # Red text (BGR: high R, low B/G) exists for the rejected reasons.
    red = (sheet[:, :, 2] > 120) & (sheet[:, :, 0] < 80) & (sheet[:, :, 1] < 80)
    assert red.sum() > 50
    # Same call, same bytes: the asset metadata stays stable across re-materializations.
    assert render_contact_sheet(photos, rejected, title="obama v1") == png


def test_more_anchors_make_more_rows() -> None:
    img = _photo("biden.jpg")
    one_row = _decode(render_contact_sheet({"A_SELFIE": [(img, ["x"])] * 3}, columns=3))
    two_rows = _decode(render_contact_sheet({"A_SELFIE": [(img, ["x"])] * 4}, columns=3))
    assert two_rows.shape[0] > one_row.shape[0] + THUMB
    assert two_rows.shape[1] == one_row.shape[1]


def test_gray_and_alpha_images_and_unicode_labels_render() -> None:
    gray = cv2.cvtColor(_photo("biden2.jpg"), cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(_photo("obama3.jpg"), cv2.COLOR_BGR2BGRA)
    png = render_contact_sheet({"A_SELFIE": [(gray, ["café ü"]), (bgra, ["y" * 200])]})
    assert _decode(png).ndim == 3


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 3), np.float32), np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 2), np.uint8), "img"],
)
def test_bad_images_are_typed_errors(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        render_contact_sheet({"A_SELFIE": [(bad, ["x"])]})  # type: ignore[list-item]


def test_markdown_embeds_png_as_data_uri() -> None:
    png = render_contact_sheet({"A_SELFIE": [(_photo("obama.jpg"), ["x"])]})
    md = contact_sheet_markdown(png, alt="anchors")
    assert md.startswith("![anchors](data:image/png;base64,iVBOR")


def test_a_mode_note_is_drawn_under_its_heading_and_wrapped() -> None:
    """Why a mode's canonical anchor was chosen shows under the mode's heading, in green,
    wrapped to the sheet's width (the sheet grows by the lines, not wider)."""
    tiles = {"A_SELFIE": [(_photo("obama1.jpg"), ["obama1.jpg"])],
             "C_CUTAWAY": [(_photo("obama3.jpg"), ["x"])]}
    plain = _decode(render_contact_sheet(tiles))
    note = "canonical obama1.jpg: render-ready (neutral 1.00, mouth closed 0.95) " + "and more " * 30
    noted = _decode(render_contact_sheet(tiles, notes={"A_SELFIE": note}))
    assert noted.shape[1] == plain.shape[1]
    assert noted.shape[0] >= plain.shape[0] + 3 * 15  # three lines or more

    def green(img: np.ndarray) -> int:
        return int(((img[:, :, 1] > 70) & (img[:, :, 2] < 70) & (img[:, :, 0] < 60)).sum())

    assert green(noted) > green(plain) + 50
