"""Per-frame measurements the runtime's DriftMeter is built from (OpenCV; imported lazily by it).

- decoding a frame from a BGR array, encoded image bytes or a path, with a typed error;
- the *background* of a frame: everything outside the person (the face box widened to the
  shoulders and extended to the bottom of the frame; in a close-up, outside the face box),
  summarised as an HSV colour histogram over about 64 x 64 pixels sampled on a grid; two
  backgrounds compare by histogram intersection (1 = same colours), which tolerates
  re-encoding and small shifts and costs well under a millisecond;
- *flicker* between two consecutive faces: the largest of the aligned crops' change
  (1 - normalised cross-correlation), the identity jump (1 - cosine of the embeddings) and the
  face box's jump (centre shift over face width, scale change);
- sampling every N-th frame of a video, the one loop the builder's input step uses as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.errors import BadFrameError, BadModelInputError
from persona_core.vision.imageutil import check_bgr

THUMB = 64
HIST_BINS = (8, 4, 4)
CROP_GRAY = 64


def decode_frame(frame: object) -> np.ndarray:
    """An HxWx3 BGR uint8 image from an array, encoded image bytes or a path."""
    if isinstance(frame, np.ndarray):
        try:
            return check_bgr(frame, "frame")
        except BadModelInputError as exc:
            raise BadFrameError(str(exc)) from None
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        what = f"{len(data)} bytes"
    elif isinstance(frame, (str, Path)):
        path = Path(frame)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadFrameError(f"cannot read frame {path}: {exc.strerror or exc}") from None
        what = str(path)
    else:
        raise BadFrameError(f"a frame is a BGR array, image bytes or a path, not {type(frame).__name__}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise BadFrameError(f"{what}: not a decodable image")
    return image


MIN_BACKGROUND_FRACTION = 0.05


def person_mask(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> np.ndarray:
    """True where the frame is background: outside the face box widened by 0.6 face widths on
    each side, from 0.4 face heights above it down to the bottom (head, shoulders, body). In a
    close-up that leaves (almost) nothing: then only the face box itself is left out."""
    h, w = shape[:2]
    x, y, bw, bh = box
    mask = np.ones((h, w), bool)
    x0, x1 = int(max(0.0, x - 0.6 * bw)), int(min(float(w), x + 1.6 * bw))
    y0 = int(max(0.0, y - 0.4 * bh))
    mask[y0:, x0:x1] = False
    if mask.mean() < MIN_BACKGROUND_FRACTION:
        mask[:] = True
        top, bottom = int(max(0.0, y)), int(min(float(h), y + bh))
        mask[top:bottom, int(max(0.0, x)) : int(min(float(w), x + bw))] = False
    return mask


@dataclass(frozen=True, slots=True)
class Background:
    hist: np.ndarray  # normalised HSV histogram of the background pixels (sums to 1, or all 0)
    pixels: int


def background(image: np.ndarray, box: tuple[float, float, float, float] | None) -> Background:
    """The background descriptor of ``image``; the whole frame when no face box is known.

    Pixels are taken on a regular grid (about THUMB x THUMB of them) rather than by an area
    resize: a colour histogram does not need the averaging, and striding costs almost nothing."""
    h, w = image.shape[:2]
    sy, sx = max(1, h // THUMB), max(1, w // THUMB)
    small = np.ascontiguousarray(image[::sy, ::sx])
    th, tw = small.shape[:2]
    if box is None:
        keep = np.ones((th, tw), bool)
    else:
        keep = person_mask((th, tw), (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy))
    pixels = int(keep.sum())
    if pixels == 0:
        return Background(np.zeros(int(np.prod(HIST_BINS)), np.float32), 0)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], keep.astype(np.uint8), list(HIST_BINS), [0, 180, 0, 256, 0, 256])
    flat = hist.ravel().astype(np.float32)
    return Background(flat / max(float(flat.sum()), 1.0), pixels)


def background_similarity(a: Background, b: Background) -> float | None:
    """Histogram intersection in [0, 1]; None when either frame shows no background at all."""
    if a.pixels == 0 or b.pixels == 0:
        return None
    return float(np.minimum(a.hist, b.hist).sum())


def gray_crop(aligned_bgr: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (CROP_GRAY, CROP_GRAY), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


@dataclass(frozen=True, slots=True)
class FaceState:
    """What flicker compares between consecutive frames."""

    crop: np.ndarray  # gray_crop() of the aligned face
    embedding: np.ndarray
    box: tuple[float, float, float, float]


def flicker(prev: FaceState, cur: FaceState) -> float:
    """Change of the face between two consecutive frames, in [0, 1] (0 = same face, same place)."""
    appearance = 1.0 - float(np.dot(prev.crop.ravel(), cur.crop.ravel()))
    identity_jump = 1.0 - float(np.dot(prev.embedding, cur.embedding))
    (px, py, pw, ph), (cx, cy, cw, ch) = prev.box, cur.box
    width = max(pw, cw, 1e-6)
    shift = float(np.hypot((px + pw / 2) - (cx + cw / 2), (py + ph / 2) - (cy + ch / 2))) / width
    scale = abs(float(np.log(max(cw, 1e-6) / max(pw, 1e-6)))) / float(np.log(2.0))
    return float(min(1.0, max(0.0, appearance, identity_jump, shift, scale)))


@contextmanager
def open_video(path: str | Path) -> Iterator[cv2.VideoCapture]:
    """An open OpenCV capture of the video at ``path``, released on exit; BadFrameError when
    OpenCV cannot open it."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise BadFrameError(f"{path}: not a readable video")
        yield cap
    finally:
        cap.release()


def every_nth_frame(cap: cv2.VideoCapture, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of every ``every``-th frame of an open capture, as they are read.

    The one frame-sampling loop of the builder and the runtime. Frames in between are only
    grabbed, never decoded; a sampled frame that fails to decode is skipped and still counts.
    """
    if every < 1:
        raise BadFrameError(f"sample every N frames needs N >= 1, got {every}")
    index = 0
    while cap.grab():
        if index % every == 0:
            ok, image = cap.retrieve()
            if ok and image is not None:
                yield index, image
        index += 1


def video_frames(path: str | Path, every: int) -> list[tuple[int, np.ndarray]]:
    """Every ``every``-th frame of the video at ``path`` as (frame index, BGR image)."""
    if every < 1:
        raise BadFrameError(f"sample every N frames needs N >= 1, got {every}")
    if not Path(path).is_file():
        raise BadFrameError(f"no video file at {path}")
    with open_video(path) as cap:
        frames = list(every_nth_frame(cap, every))
    if not frames:
        raise BadFrameError(f"{path}: no frames could be decoded")
    return frames
