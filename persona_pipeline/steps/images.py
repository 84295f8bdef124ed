"""Image decoding and small image helpers shared by the steps (OpenCV, no models)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from persona_core.errors import InvalidInputError

# JPEG decoders can scale by 1/2, 1/4, 1/8 while decoding, which is far cheaper than a
# full decode followed by a resize.
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; InvalidInputError when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0]), int(img.size[1])
    except UnidentifiedImageError:
        raise InvalidInputError("not an image file (unrecognised format: no JPEG/PNG/WebP header)") from None
    except Image.DecompressionBombError as exc:
        raise InvalidInputError(f"image too large: {exc}") from None
    except Exception as exc:  # PIL raises many unrelated types for truncated files
        raise InvalidInputError(f"damaged image ({type(exc).__name__}: {exc})") from None


def decode(data: bytes, factor: int = 1) -> np.ndarray:
    """BGR uint8, decoded at 1/factor scale (factor in 1, 2, 4, 8)."""
    if factor not in _REDUCED:
        raise InvalidInputError(f"decode factor must be one of {sorted(_REDUCED)}")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED[factor])
    if img is None or img.size == 0:
        raise InvalidInputError("image bytes could not be decoded (truncated or not an image)")
    return img


def reduction_for(longest_side: int, target: int) -> int:
    """Largest decode factor that keeps the longer side at or above ``target``."""
    factor = 1
    while factor < 8 and longest_side // (factor * 2) >= target:
        factor *= 2
    return factor


def encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InvalidInputError("could not encode PNG")
    return buf.tobytes()


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InvalidInputError("could not encode JPEG")
    return buf.tobytes()


def dhash(img: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash: near-identical frames differ in a few bits."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    small = cv2.resize(gray, (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
