from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FIXTURES / "faces"


@pytest.fixture(scope="session")
def voices_dir() -> Path:
    return FIXTURES / "voices"


@pytest.fixture(scope="session")
def read_face(faces_dir: Path) -> Callable[[str], np.ndarray]:
    def read(name: str) -> np.ndarray:
        image = cv2.imread(str(faces_dir / name))
        assert image is not None, name
        return image

    return read
