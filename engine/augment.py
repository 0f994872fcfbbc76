"""Photometric variants of a dataset's images: the same pixels' layout and fixations, other colours and contrast.

Ads and designs are flatter, more saturated or paler than the free-viewing photos foveal learns from. A variant
draws, per image, a brightness and a contrast factor, a saturation factor and a gamma (and with a small chance
drops the colour), so the readout sees the same scene under several renderings; where people looked does not
change.
"""
from __future__ import annotations

import numpy as np

from foveal.datasets import Dataset

BRIGHTNESS = (0.7, 1.3)
CONTRAST = (0.6, 1.4)
SATURATION = (0.4, 1.6)
GAMMA = (0.7, 1.4)
GREY = 0.1  # chance of a grey rendering


def render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One photometric rendering of uint8 H×W×3 ``image`` with factors drawn from ``rng``."""
    x = image.astype(np.float32) / 255.0
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = 0.0 if rng.random() < GREY else rng.uniform(*SATURATION)
    x = grey[..., None] + saturation * (x - grey[..., None])
    x = x.mean() + rng.uniform(*CONTRAST) * (x - x.mean())
    x = np.clip(x * rng.uniform(*BRIGHTNESS), 0.0, 1.0) ** rng.uniform(*GAMMA)
    return np.round(x * 255.0).astype(np.uint8)


class Photometric(Dataset):
    """Variant ``k`` of every image of ``parent`` (its renderings are seeded by ``seed``, ``k`` and the image)."""

    def __init__(self, parent: Dataset, k: int, seed: int = 0) -> None:
        super().__init__(f"{parent.name}-photo{k}s{seed}", [f"{i}~photo{k}s{seed}" for i in parent.ids],
                         [parent.path(i) for i in range(len(parent))],
                         [parent.fixations(i) for i in range(len(parent))], None, lambda h, w: 0.0,
                         [parent.shape(i) for i in range(len(parent))])
        self._parent, self._k, self._seed = parent, k, seed

    def image(self, i: int) -> np.ndarray:
        i = self._check(i)
        return render(self._parent.image(i), np.random.default_rng((self._seed, self._k, i)))

    def sigma(self, i: int) -> float:
        return self._parent.sigma(i)
