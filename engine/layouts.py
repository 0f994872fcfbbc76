"""Banner-shaped strips cut from a dataset's images, with the fixations that fell inside them.

Ads come in shapes photos do not (728×90 leaderboards, 160×600 skyscrapers, 320×50 mobile banners), and on the
network's input such a shape is mostly padding. Training on strips shows the readout and its centre prior views
of that shape. A strip is not an ad: its fixations were made by people viewing the whole photo, so a strip near
a photo's edge holds fixations pulled towards the photo's centre; strips are cut at every height of the photo
so that this pull averages out, and they are scored on val strips (:func:`banner_strips`) as well as on whole
images.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from foveal.datasets import Dataset

#: Long side : short side of the strips, drawn per strip (16:3 is 728×90's neighbour 5.3:1, 3:1 a 300×100).
ASPECTS = (3.0, 4.0, 16 / 3, 8.0)
#: A strip with fewer fixations says little about where they go.
MIN_FIXATIONS = 5
#: Height : width of the strips that score a model on banners (16:3, 150 rows of an 800-wide photo).
BANNER_ASPECT = 150 / 800


class Strips(Dataset):
    """Strips of ``parent``: ``boxes[k] = (image index, top, left, height, width)`` in the parent's pixels."""

    def __init__(self, parent: Dataset, boxes: list[tuple[int, int, int, int, int]], name: str) -> None:
        fixations = [parent.fixations(i).cropped(y, x, h, w) for i, y, x, h, w in boxes]
        super().__init__(name, [f"{parent.ids[i]}@{y},{x},{h},{w}" for i, y, x, h, w in boxes],
                         [parent.path(i) for i, *_ in boxes], fixations, None, lambda h, w: 0.0,
                         [(h, w) for _, _, _, h, w in boxes])
        self._parent, self.boxes = parent, boxes

    def image(self, i: int) -> np.ndarray:
        k, y, x, h, w = self.boxes[self._check(i)]
        return np.ascontiguousarray(self._parent.image(k)[y:y + h, x:x + w])

    def sigma(self, i: int) -> float:
        """The parent image's sigma: a strip shows the photo at the size it was viewed."""
        return self._parent.sigma(self.boxes[self._check(i)][0])


def strips(ds: Dataset, per_image: int, seed: int = 0) -> Strips:
    """``per_image`` strips of every image of ``ds`` (each horizontal or vertical, aspect from :data:`ASPECTS`,
    at a uniformly drawn position), keeping those with at least :data:`MIN_FIXATIONS` fixations."""
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(len(ds)):
        h, w = ds.shape(i)
        fix = ds.fixations(i)
        for _ in range(per_image):
            aspect, across = rng.choice(ASPECTS), rng.random() < 0.5
            if across:  # a horizontal band, the photo's full width
                sh, sw = max(8, round(w / aspect)), w
            else:
                sh, sw = h, max(8, round(h / aspect))
            if sh > h or sw > w:
                continue
            y, x = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
            if len(fix.cropped(y, x, sh, sw)) >= MIN_FIXATIONS:
                boxes.append((i, y, x, sh, sw))
    return Strips(ds, boxes, f"{ds.name}-strips{per_image}s{seed}")


def banner_strips(ds: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Full-width strips of :data:`BANNER_ASPECT` cut from the top, middle and bottom of every image of ``ds``,
    those with at least :data:`MIN_FIXATIONS` fixations: (pixels, fixation x, fixation y) in the strip's own
    coordinates."""
    for i in range(len(ds)):
        image, fix = ds.image(i), ds.fixations(i)
        height, width = image.shape[:2]
        h = max(8, round(width * BANNER_ASPECT))
        for top in (0, (height - h) // 2, height - h):
            inside = fix.cropped(top, 0, h, width)
            if len(inside) >= MIN_FIXATIONS:
                yield np.ascontiguousarray(image[top:top + h]), inside.x, inside.y
