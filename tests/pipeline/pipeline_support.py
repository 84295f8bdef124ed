"""Helpers for the builder tests: a persona home on the embedded default (SQLite + blob
folder), fixture uploads, and the thresholds the fixture set can meet."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from persona_core.ingest import submit_version
from persona_core.settings import Settings
from persona_core.store.base import BlobStore, MetadataStore, VersionRecord
from persona_core.store.from_settings import open_blob_store, open_metadata_store
from persona_pipeline.steps.config import PipelineConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FACES = FIXTURES / "faces"
VOICES = FIXTURES / "voices"
OBAMA = ["obama.jpg", "obama1.jpg", "obama2.jpg", "obama3.jpg"]
PARTIAL = ["obama_partial_face.jpg", "obama_partial_face2.jpg"]
TWO_FACES = ["two_people.jpg", "obama_and_biden.jpg"]

# The fixture set has close-ups and half- and full-body photos of the same man, and no mirror
# selfie (B_MIRROR needs a mirror cue or the uploader's tag): one anchor in each of the other
# two modes is what it can give, so that is what these tests require.
FIXTURE_CONFIG = PipelineConfig(
    required_modes=("A_SELFIE", "C_CUTAWAY"),
    min_anchors_per_mode={"A_SELFIE": 1, "C_CUTAWAY": 1},
)


class Home:
    """One persona-core home: settings, stores, and a way to upload fixture files."""

    def __init__(self, root: Path, settings: Settings | None = None) -> None:
        self.settings = settings or Settings(home=root)
        self.meta: MetadataStore = open_metadata_store(self.settings)
        self.blobs: BlobStore = open_blob_store(self.settings)

    def upload(
        self,
        persona_id: str,
        photos: Iterable[str] = (),
        voices: Iterable[str] = (),
        extra: Sequence[tuple[str, bytes, str]] = (),
        camera_modes: dict[str, str] | None = None,
    ) -> VersionRecord:
        try:
            self.meta.get_persona(persona_id)
        except LookupError:
            self.meta.create_persona(persona_id, {})
        files = [(n, (FACES / n).read_bytes(), "image") for n in photos]
        files += [(n, (VOICES / n).read_bytes(), "voice") for n in voices]
        files += list(extra)
        return submit_version(self.meta, self.blobs, persona_id, files, camera_modes=camera_modes)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path)


def variant(name: str, how: str) -> bytes:
    """A distinct but equally usable photo made from a fixture: brighter, darker or re-encoded."""
    img = cv2.imread(str(FACES / name))
    if how == "bright":
        img = cv2.convertScaleAbs(img, alpha=1.0, beta=18)
    elif how == "dark":
        img = cv2.convertScaleAbs(img, alpha=0.9, beta=0)
    elif how == "flip":
        img = np.ascontiguousarray(img[:, ::-1])
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def clip_bytes(frames: list[np.ndarray], repeat: int, fps: float = 10.0) -> bytes:
    """An MJPG .avi in which each frame is held for ``repeat`` frames."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.avi"
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        assert writer.isOpened()
        for frame in frames:
            for _ in range(repeat):
                writer.write(frame)
        writer.release()
        return path.read_bytes()
