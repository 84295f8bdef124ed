from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory):
    """Derived model files (exported ONNX) go to a per-session folder, never the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONA_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        mp.delenv("PERSONA_MODEL_DIR", raising=False)
        yield


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
