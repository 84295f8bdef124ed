from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from persona_pipeline.models import register_builder_models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _builder_models() -> None:
    """These tests load the builder's models by name from the shared registry, as the pipeline
    does once it has registered them."""
    register_builder_models()


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
