"""Shared fixtures: small synthetic images and the path to the eye-tracking data when present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "osie").is_dir() or not (DATA / "scene").is_dir():
        pytest.skip(f"eye-tracking data not found at {DATA} (see ../shared/data/README.md)")
    return DATA


@pytest.fixture
def rgb() -> np.ndarray:
    """A 90×120 image with a bright red disc on grey: a clear pop-out."""
    yy, xx = np.mgrid[0:90, 0:120]
    image = np.full((90, 120, 3), 110, np.uint8)
    image[(yy - 30) ** 2 + (xx - 85) ** 2 < 100] = (230, 20, 20)
    return image
