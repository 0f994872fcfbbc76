"""Pixel rules around detected text: the filled shape a line sits on (a button), a logo's mark, the product.

All boxes here are half-open ``(x0, y0, x1, y1)`` in image pixels.
"""
from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]

_FLOOD_STEP = 10      # colour step (per channel) a flood may take between neighbours: follows gradients, stops at edges
_MIN_FILL = 0.80      # share of a button's box (outside its text) the fill must cover
_MIN_CONTRAST = 40.0  # colour distance between a button's fill and what surrounds it


def _colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a.astype(np.float32) - b.astype(np.float32)) ** 2).sum(-1))


def find_button(cv2, rgb: np.ndarray, box: Box, scale: float = 1.0) -> tuple[Box, float] | None:
    """The filled shape (button) that the text in ``box`` sits on, with a strength in [0, 1], or None.

    The fill is flooded from the four sides just outside the text; it must stay inside a window a few text heights
    around the text (else it is the background), cover the shape's box, pad the text on every side and differ from
    what surrounds the shape. ``scale`` is how much the image was reduced to find its text: where that is by half
    or more, the window is reduced by the largest whole factor that keeps it no smaller, as an image upscaled, or
    exported at many times the size its type needs, spreads a button's anti-aliased edge over so many pixels that
    no step across it stops the flood.
    """
    h_img, w_img = rgb.shape[:2]
    x0, y0, x1, y1 = box
    th = y1 - y0
    wx0, wy0 = max(0, x0 - 3 * th), max(0, y0 - 2 * th)
    wx1, wy1 = min(w_img, x1 + 3 * th), min(h_img, y1 + 2 * th)
    # window pixels per pixel looked at: a whole number, so boxes map back exactly; never more than the window is
    # high or wide (a 39680x20 banner's window would have been reduced to nothing, and OpenCV raised)
    k = max(1, min(int(1 / scale), wy1 - wy0, wx1 - wx0))
    window = rgb[wy0:wy1, wx0:wx1]
    if k > 1:
        wx1, wy1 = wx0 + (wx1 - wx0) // k * k, wy0 + (wy1 - wy0) // k * k
        window = cv2.resize(rgb[wy0:wy1, wx0:wx1], ((wx1 - wx0) // k, (wy1 - wy0) // k),
                            interpolation=cv2.INTER_AREA)
    wh, ww = window.shape[:2]
    bx0, by0, bx1, by1 = (x0 - wx0) // k, (y0 - wy0) // k, -(-(x1 - wx0) // k), -(-(y1 - wy0) // k)
    th = by1 - by0
    pad = max(2, int(round(0.2 * th)))
    cy, cx = (by0 + by1) // 2, (bx0 + bx1) // 2
    seeds = [(bx0 - pad, cy), (bx1 + pad - 1, cy), (cx, by0 - pad), (cx, by1 + pad - 1)]
    seeds = [(sx, sy) for sx, sy in seeds if 0 <= sx < ww and 0 <= sy < wh]
    if len(seeds) < 4:
        return None
    colours = np.array([window[sy, sx] for sx, sy in seeds], np.float32)
    fill = np.median(colours, axis=0)
    if _colour_distance(colours, fill).max() > 30:
        return None  # the four sides of the text do not share one colour: no fill behind it
    mask = np.zeros((wh + 2, ww + 2), np.uint8)
    flags = 4 | (255 << 8) | cv2.FLOODFILL_MASK_ONLY
    step = (_FLOOD_STEP,) * 3
    # Flooded on a 3x3 median of the window: a JPEG's block and ringing noise on a flat fill breaks the small steps
    # the flood takes between neighbours (a flat fill and its edges are a median's fixed points).
    smooth = cv2.medianBlur(np.ascontiguousarray(window), 3)
    for seed in seeds:
        if not mask[seed[1] + 1, seed[0] + 1]:
            cv2.floodFill(smooth, mask, seed, (0, 0, 0), step, step, flags)
    filled = mask[1:-1, 1:-1] > 0
    ys, xs = np.nonzero(filled)
    fx0, fy0, fx1, fy1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    touches = (fx0 == 0 and wx0 > 0) or (fy0 == 0 and wy0 > 0) or (fx1 == ww and wx1 < w_img) or \
        (fy1 == wh and wy1 < h_img)
    if touches or fx0 > bx0 or fy0 > by0 or fx1 < bx1 or fy1 < by1:
        return None
    if min(by0 - fy0, fy1 - by1) < 0.1 * th or min(bx0 - fx0, fx1 - bx1) < 0.1 * th:
        return None  # no padding around the text: a tight highlight, not a button
    if fy1 - fy0 > 4.5 * th:
        return None  # far taller than its text: a panel, not a button
    region = filled[fy0:fy1, fx0:fx1].copy()
    region[max(0, by0 - fy0):by1 - fy0, max(0, bx0 - fx0):bx1 - fx0] = True
    coverage = float(region.mean())
    if coverage < _MIN_FILL:
        return None
    ring = _ring(window, (fx0, fy0, fx1, fy1), max(2, pad))
    if ring.size == 0:
        return None
    contrast = float(np.median(_colour_distance(ring, fill)))
    if contrast < _MIN_CONTRAST:
        return None
    strength = min(1.0, 0.5 * coverage + 0.5 * min(1.0, contrast / 120))
    return (wx0 + k * fx0, wy0 + k * fy0, min(w_img, wx0 + k * fx1), min(h_img, wy0 + k * fy1)), strength


def _ring(image: np.ndarray, box: Box, width: int) -> np.ndarray:
    """Pixels in a band ``width`` wide just outside ``box`` (clipped to the image), as an (N, 3) array."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    parts = [image[max(0, y0 - width):y0, max(0, x0 - width):min(w, x1 + width)],
             image[y1:min(h, y1 + width), max(0, x0 - width):min(w, x1 + width)],
             image[y0:y1, max(0, x0 - width):x0], image[y0:y1, x1:min(w, x1 + width)]]
    return np.concatenate([p.reshape(-1, 3) for p in parts])


def mark_beside(cv2, rgb: np.ndarray, box: Box) -> Box:
    """``box`` grown to take in a compact mark (a logo's symbol) standing just left, right or above the text."""
    h_img, w_img = rgb.shape[:2]
    x0, y0, x1, y1 = box
    th = y1 - y0
    wx0, wy0 = max(0, x0 - 3 * th), max(0, y0 - 2 * th)
    wx1, wy1 = min(w_img, x1 + 3 * th), min(h_img, y1 + th)
    window = rgb[wy0:wy1, wx0:wx1]
    border = np.concatenate([window[0], window[-1], window[:, 0], window[:, -1]])
    background = np.median(border, axis=0)
    ink = (_colour_distance(window, background) > 40).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    gx0, gy0, gx1, gy1 = x0, y0, x1, y1
    wh, ww = window.shape[:2]
    for i in range(1, n):
        cx0, cy0, cw, ch, area = (int(v) for v in stats[i])
        cx0, cy0 = cx0 + wx0, cy0 + wy0
        cx1, cy1 = cx0 + cw, cy0 + ch
        inside_text = cx0 >= x0 and cx1 <= x1 and cy0 >= y0 and cy1 <= y1
        on_border = cx0 == wx0 and wx0 > 0 or cy0 == wy0 and wy0 > 0 or cx1 == wx1 and wx1 < w_img or \
            cy1 == wy1 and wy1 < h_img
        if inside_text or on_border or area < 0.1 * th * th or max(cw, ch) > 3.2 * th:
            continue
        beside = (cy1 > y0 and cy0 < y1 and (x0 - cx1 < 1.5 * th) and (cx0 - x1 < 1.5 * th))
        above = cx1 > x0 and cx0 < x1 and 0 <= y0 - cy1 < 0.8 * th
        if beside or above:
            gx0, gy0, gx1, gy1 = min(gx0, cx0), min(gy0, cy0), max(gx1, cx1), max(gy1, cy1)
    return gx0, gy0, gx1, gy1


_SPREAD = 3


def product_region(cv2, rgb: np.ndarray, exclude: list[Box]) -> tuple[Box, float] | None:
    """The largest sharply textured region outside the ``exclude`` boxes (text, buttons, faces), or None.

    Creatives set a sharp product shot against a flat, gradient or softened background; the product is where
    fine detail (local gradient energy) is, once the text is masked out.
    """
    h, w = rgb.shape[:2]
    scale = 256 / max(h, w)
    sw, sh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
    grey = cv2.cvtColor(cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    grey = grey.astype(np.float32)
    energy = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3))
    energy = cv2.blur(energy, (5, 5))
    # Sharper than the rest of the creative: a softened photo background has some detail, the product much more.
    busy = (energy > max(6.0, 3.0 * float(np.median(energy)))).astype(np.uint8)
    # A box's edges spread its energy _SPREAD cells beyond it (the Laplacian's one, the blur's two): masking only
    # the box left its outline, and closing joined the outlines of neighbouring buttons into a "product".
    for x0, y0, x1, y1 in exclude:
        busy[max(0, int(y0 * sh / h) - _SPREAD):int(np.ceil(y1 * sh / h)) + _SPREAD,
             max(0, int(x0 * sw / w) - _SPREAD):int(np.ceil(x1 * sw / w)) + _SPREAD] = 0
    busy = cv2.morphologyEx(busy, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    busy = cv2.morphologyEx(busy, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(busy, connectivity=8)
    if n < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x0, y0, bw, bh, area = (int(v) for v in stats[best])
    if area < 0.02 * sw * sh or bw * bh > 0.85 * sw * sh:
        return None  # nothing, or texture everywhere (a sharp photo background): no single product
    # Per axis, as the grid was resized: a side of fewer than 8 cells' worth of pixels was stretched to 8.
    fx, fy = w / sw, h / sh
    box = (int(x0 * fx), int(y0 * fy), min(w, int(np.ceil((x0 + bw) * fx))), min(h, int(np.ceil((y0 + bh) * fy))))
    return box, float(min(1.0, area / (bw * bh)))
