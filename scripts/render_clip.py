"""Write ``examples/render.mp4``: three seconds standing in for a renderer's output, for the
README's ``persona-core drift`` example. Two seconds of one fixture person (a slow push-in on
``obama1.jpg``), then a cut to another person (``biden.jpg``) for the last second, so the drift
check has frames that pass and frames that fail. 10 fps, 360x450, MPEG-4 Part 2 (OpenCV's
``mp4v``), about 160 KB.

Run: ``.venv/bin/python scripts/render_clip.py [OUT]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from persona_core.vision.registry import load_detector

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT / "tests" / "fixtures" / "faces"
SIZE = (360, 450)  # width, height: a 4:5 portrait
FPS = 10


def _portrait(image: np.ndarray, zoom: float) -> np.ndarray:
    """A 4:5 crop centred on the image's main face, ``zoom`` times tighter than the widest."""
    faces = load_detector().detect(image)
    if not faces:
        raise ValueError("no face in the source photo")
    x, y, w, h = (float(v) for v in faces[0].bbox)
    cx, cy = x + w / 2, y + h / 2
    height = min(image.shape[0], image.shape[1] * 5 / 4, h * 3.2) / zoom
    width = height * 4 / 5
    left = int(np.clip(cx - width / 2, 0, image.shape[1] - width))
    top = int(np.clip(cy - height / 2, 0, image.shape[0] - height))
    crop = image[top : top + int(height), left : left + int(width)]
    return cv2.resize(crop, SIZE, interpolation=cv2.INTER_AREA)


def main(out: Path) -> None:
    genuine = cv2.imread(str(FACES / "obama1.jpg"))
    other = cv2.imread(str(FACES / "biden.jpg"))
    frames = [_portrait(genuine, 1.0 + 0.004 * i) for i in range(2 * FPS)]
    frames += [_portrait(other, 1.0)] * FPS
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v here")
    for frame in frames:
        writer.write(frame)
    writer.release()
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(frames)} frames)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "render.mp4")
