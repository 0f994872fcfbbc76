"""Ad-like layouts of a dataset's images: banner-shaped strips cut from them, and the photos letterboxed on ad
canvases, each with its fixations.

Ads come in shapes photos do not (728×90 leaderboards, 160×600 skyscrapers, 320×50 mobile banners), and on the
network's input such a shape is mostly padding. Training on strips shows the readout and its centre prior views
of that shape. A strip is not an ad: its fixations were made by people viewing the whole photo, so a strip near
a photo's edge holds fixations pulled towards the photo's centre; strips are cut at every height of the photo
so that this pull averages out, and they are scored on val strips (:func:`banner_strips`) as well as on whole
images.

A letterboxed view places the whole photo, at its own scale, on a larger flat canvas of an ad's aspect (a
square post, a 1200×628 link ad, a 9:16 story), off centre. Its fixations are the photo's, moved with it; nobody
looked at the flat margin, which is what one expects of an empty margin, but the canvas's centre is no longer the
photo's. Such views are scored on val photos letterboxed the same way (:func:`letterboxed_views`).
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
#: Width : height of the canvases a photo is letterboxed on: 1080×1080, 1200×628, 4:5, 9:16, 300×250, 16:9.
CANVAS_ASPECTS = (1.0, 1200 / 628, 0.8, 9 / 16, 1.2, 16 / 9)
#: The share of the canvas's constraining side the photo spans, drawn per view.
PHOTO_SPAN = (0.55, 0.9)


class _Views(Dataset):
    """Views made from ``parent``'s images: view k from image ``sources[k]``, id ``<parent id>@<tags[k]>``, shown
    at the parent's viewing scale (so its sigma is the parent image's)."""

    def __init__(self, parent: Dataset, name: str, sources: list[int], tags: list[str], fixations: list,
                 shapes: list[tuple[int, int]]) -> None:
        super().__init__(name, [f"{parent.ids[i]}@{t}" for i, t in zip(sources, tags)],
                         [parent.path(i) for i in sources], fixations, None, lambda h, w: 0.0, shapes)
        self._parent, self._sources = parent, sources

    def sigma(self, i: int) -> float:
        return self._parent.sigma(self._sources[self._check(i)])


class Strips(_Views):
    """Strips of ``parent``: ``boxes[k] = (image index, top, left, height, width)`` in the parent's pixels."""

    def __init__(self, parent: Dataset, boxes: list[tuple[int, int, int, int, int]], name: str) -> None:
        super().__init__(parent, name, [i for i, *_ in boxes], [f"{y},{x},{h},{w}" for _, y, x, h, w in boxes],
                         [parent.fixations(i).cropped(y, x, h, w) for i, y, x, h, w in boxes],
                         [(h, w) for _, _, _, h, w in boxes])
        self.boxes = boxes

    def image(self, i: int) -> np.ndarray:
        k, y, x, h, w = self.boxes[self._check(i)]
        return np.ascontiguousarray(self._parent.image(k)[y:y + h, x:x + w])


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


class Letterboxed(_Views):
    """Photos of ``parent`` on flat canvases: ``layouts[k] = (image index, canvas height, canvas width, top, left,
    colour)``, the photo's top-left corner at (top, left) in canvas pixels, at the photo's own scale; colour is an
    (r, g, b) or None for the photo's mean colour."""

    def __init__(self, parent: Dataset, layouts: list[tuple[int, int, int, int, int, tuple[int, int, int] | None]],
                 name: str) -> None:
        super().__init__(parent, name, [i for i, *_ in layouts],
                         [f"box{ch}x{cw}+{top}+{left}" for _, ch, cw, top, left, _ in layouts],
                         [parent.fixations(i).cropped(-top, -left, ch, cw) for i, ch, cw, top, left, _ in layouts],
                         [(ch, cw) for _, ch, cw, *_ in layouts])
        self.layouts = layouts

    def image(self, i: int) -> np.ndarray:
        k, ch, cw, top, left, colour = self.layouts[self._check(i)]
        return on_canvas(self._parent.image(k), ch, cw, top, left, colour)


def on_canvas(photo: np.ndarray, ch: int, cw: int, top: int, left: int,
              colour: tuple[int, int, int] | int | None) -> np.ndarray:
    """``photo`` pasted at (top, left) on a ch×cw canvas of ``colour`` (None: the photo's mean colour)."""
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = np.rint(photo.reshape(-1, 3).mean(0)) if colour is None else colour
    canvas[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
    return canvas


def canvas_for(h: int, w: int, aspect: float, span: float) -> tuple[int, int]:
    """The (height, width) of a canvas of width:height ``aspect`` on which an h×w photo spans ``span`` of the
    constraining side (and fits along the other)."""
    if w / h >= aspect:  # the photo is wider than the canvas's shape: its width constrains
        cw = max(w + 1, round(w / span))
        return max(h, round(cw / aspect)), cw
    ch = max(h + 1, round(h / span))
    return ch, max(w, round(ch * aspect))


def letterboxed(ds: Dataset, per_image: int, seed: int = 0) -> Letterboxed:
    """``per_image`` letterboxed views of every image of ``ds``: canvas aspect from :data:`CANVAS_ASPECTS`, span
    from :data:`PHOTO_SPAN`, position uniform, background white, black, the photo's mean colour or a random one."""
    rng = np.random.default_rng(seed)
    layouts = []
    for i in range(len(ds)):
        h, w = ds.shape(i)
        for _ in range(per_image):
            ch, cw = canvas_for(h, w, float(rng.choice(CANVAS_ASPECTS)), float(rng.uniform(*PHOTO_SPAN)))
            top, left = int(rng.integers(0, ch - h + 1)), int(rng.integers(0, cw - w + 1))
            random = tuple(int(c) for c in rng.integers(0, 256, 3))
            colour = ((255, 255, 255), (0, 0, 0), None, random)[int(rng.integers(0, 4))]
            layouts.append((i, ch, cw, top, left, colour))
    return Letterboxed(ds, layouts, f"{ds.name}-letterbox{per_image}s{seed}")


def letterboxed_views(ds: Dataset) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every image of ``ds`` on three canvases at span 0.7: square and centred on white, 1200×628 against the
    left edge on the photo's mean colour, 9:16 against the top on black: (pixels, fixation x, fixation y) in the
    canvas's coordinates."""
    for i in range(len(ds)):
        photo, fix = ds.image(i), ds.fixations(i)
        h, w = photo.shape[:2]
        for aspect, place, colour in ((1.0, "centre", 255), (1200 / 628, "left", None), (9 / 16, "top", 0)):
            ch, cw = canvas_for(h, w, aspect, 0.7)
            top = 0 if place == "top" else (ch - h) // 2
            left = 0 if place == "left" else (cw - w) // 2
            yield on_canvas(photo, ch, cw, top, left, colour), fix.x + left, fix.y + top
