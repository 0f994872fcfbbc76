"""Rules that turn text lines, buttons and marks into element kinds: headline, body_text, cta, logo.

Boxes are half-open ``(x0, y0, x1, y1)`` in image pixels.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from .text import TextLine

Box = tuple[int, int, int, int]

#: Imperative words and phrases that open or make up a call to action, accents and spaces removed (the OCR model
#: drops both); English, German, French, Spanish, Italian, Portuguese, Dutch and Chinese.
CTA_WORDS: tuple[str, ...] = (
    "shop", "buy", "order", "get", "learn", "discover", "sign", "subscribe", "join", "try", "start", "book",
    "download", "register", "apply", "contact", "call", "explore", "see", "view", "watch", "play", "install",
    "claim", "save", "donate", "more", "now", "free",
    "jetzt", "kaufen", "bestellen", "entdecken", "mehr", "erfahren", "anmelden", "testen", "sichern",
    "acheter", "achetez", "decouvr", "commander", "commandez", "essayez", "inscri", "voir", "profitez",
    "comprar", "compra", "descubr", "pide", "reserva", "registr", "prueba", "ahora",
    "acquista", "scopri", "ordina", "prova", "iscriviti", "compre", "saiba", "peca",
    "koop", "bestel", "ontdek", "立即", "购买", "马上", "了解", "注册", "下载", "抢购", "查看", "订购", "立刻", "领取")
#: Colour distance (RGB) between two stacked lines' type beyond which they are set apart (a headline over body
#: copy in another colour), however close their sizes; the same distance a button's fill needs from its surround.
INK_CONTRAST = 40.0
MAX_CTA_CHARS = 28  # a call to action is a few words; a longer line on a filled shape is a banner or a label
SIZE_STEP = 1.35  # line heights further apart than this are different type sizes (a new block)


def normalise(text: str) -> str:
    """Lower case, accents and spaces removed: the form :data:`CTA_WORDS` are written in."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c) and not c.isspace())


def is_imperative(text: str) -> bool:
    """Whether recognised text reads like a call to action."""
    flat = normalise(text)
    return any(word in flat for word in CTA_WORDS)


@dataclass(frozen=True)
class Block:
    """Lines of text set together: one headline, paragraph or wordmark."""

    box: Box
    lines: tuple[TextLine, ...]

    @property
    def line_height(self) -> float:
        """The block's type size: the median height of its lines."""
        heights = sorted(line.height for line in self.lines)
        return float(heights[len(heights) // 2])

    @property
    def score(self) -> float:
        return sum(line.score for line in self.lines) / len(self.lines)


def union(boxes: list[Box]) -> Box:
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def intersects(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    total = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / total if total else 0.0


def _same_block(a: TextLine, b: TextLine) -> bool:
    ha, hb = a.height, b.height
    if max(ha, hb) > SIZE_STEP * min(ha, hb):
        return False  # a change of type size starts a new block
    h = max(ha, hb)
    v_overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    h_gap = max(a.box[0], b.box[0]) - min(a.box[2], b.box[2])
    if v_overlap > 0.5 * min(ha, hb):
        return h_gap < 0.6 * h  # words of one line that detection split (a wider gap sets a logo or a column apart)
    v_gap = max(a.box[1], b.box[1]) - min(a.box[3], b.box[3])
    if h_gap >= 0 or v_gap >= 0.8 * h:
        return False  # stacked lines must share a column and be close
    # Type sizes of a headline and its body copy can be close on small formats (the body cannot shrink below
    # legibility); their colours usually differ.
    return a.ink is None or b.ink is None or _distance(a.ink, b.ink) < INK_CONTRAST


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return sum((p - q) ** 2 for p, q in zip(a, b)) ** 0.5


def group_lines(lines: list[TextLine]) -> list[Block]:
    """Lines joined into blocks (same type size, aligned, close), in reading order."""
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if _same_block(lines[i], lines[j]):
                parent[root(j)] = root(i)
    members: dict[int, list[TextLine]] = {}
    for i, line in enumerate(lines):
        members.setdefault(root(i), []).append(line)
    blocks = [Block(union([m.box for m in ms]), tuple(ms)) for ms in members.values()]
    return sorted(blocks, key=lambda b: (b.box[1], b.box[0]))


def near_corner(box: Box, image_hw: tuple[int, int]) -> bool:
    """Whether ``box`` is small and sits by a corner (by a short side, on a banner much wider than tall)."""
    h, w = image_hw
    x0, y0, x1, y1 = box
    if (x1 - x0) > 0.4 * w or (y1 - y0) * (x1 - x0) > 0.05 * w * h:
        return False
    # Corner zones scale with the short side, so a tall story's top text is not a corner; a banner's ends are
    # a fraction of its length.
    short = min(w, h)
    side = 0.08 * w if w > 3 * h else 0.2 * short
    by_side = x0 < side or x1 > w - side
    by_end = y0 < 0.15 * short or y1 > h - 0.15 * short or w > 3 * h
    return by_side and by_end


def stands_apart(box: Box, lines: list[TextLine]) -> bool:
    """Whether no other text line is stacked right above or below ``box`` in its column (within its own height):
    a brand's wordmark stands alone, a headline leads body copy or a button."""
    h = box[3] - box[1]
    for line in lines:
        o = line.box
        if o == box or max(box[0], o[0]) >= min(box[2], o[2]):
            continue  # itself, or not in its column
        v_gap = max(box[1], o[1]) - min(box[3], o[3])
        if 0 <= v_gap < h:
            return False
    return True
