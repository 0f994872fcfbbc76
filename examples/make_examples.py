"""Draw the example creatives and their element files (deterministic: same Pillow, same bytes).

    python examples/make_examples.py

Writes, beside this script:

- ``creative.png`` + ``creative.json``: a 600x600 feed ad (headline, face, product, logo, body text, CTA button);
- ``creative_b.png`` + ``creative_b.json``: the same ad with the CTA enlarged, recoloured and moved under the
  product (for ``foveal compare``);
- ``references/ref_NN.png`` + ``.json``: eight seeded layout variants to build example norms from.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 600
HERE = Path(__file__).resolve().parent


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: identical on every machine


def _text_box(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, fill) -> list[int]:
    """Draw text; return its [x, y, w, h] padded by 6 px (what an annotator would draw)."""
    font = _font(size)
    draw.text(xy, text, font=font, fill=fill)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
    return [x0 - 6, y0 - 6, x1 - x0 + 12, y1 - y0 + 12]


def _face(draw: ImageDraw.ImageDraw, cx: int, cy: int, r: int) -> list[int]:
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(232, 190, 160))
    draw.pieslice([cx - r - 4, cy - r - 8, cx + r + 4, cy + r // 3], 180, 360, fill=(70, 45, 30))  # hair
    for dx in (-r // 3, r // 3):
        draw.ellipse([cx + dx - 9, cy - 6, cx + dx + 9, cy + 8], fill=(255, 255, 255))
        draw.ellipse([cx + dx - 4, cy - 2, cx + dx + 4, cy + 6], fill=(40, 30, 20))
    draw.arc([cx - r // 2, cy + r // 6, cx + r // 2, cy + r // 2 + 10], 20, 160, fill=(150, 50, 50), width=4)
    return [cx - r - 4, cy - r - 8, 2 * r + 8, 2 * r + 8]


def _product(draw: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int, colour) -> list[int]:
    neck = w // 3
    draw.rectangle([x + neck, y, x + w - neck, y + h // 5], fill=(60, 60, 60))
    draw.rounded_rectangle([x, y + h // 5, x + w, y + h], radius=w // 5, fill=colour)
    draw.rectangle([x + 8, y + h // 2, x + w - 8, y + h // 2 + h // 6], fill=(250, 250, 240))
    return [x, y, w, h]


def _logo(draw: ImageDraw.ImageDraw, x: int, y: int) -> list[int]:
    draw.ellipse([x, y, x + 36, y + 36], fill=(20, 90, 160))
    draw.text((x + 44, y + 6), "AURA", font=_font(22), fill=(20, 90, 160))
    return [x - 4, y - 4, 120, 44]


def _cta(draw: ImageDraw.ImageDraw, x: int, y: int, w: int, h: int, fill, text_size: int) -> list[int]:
    draw.rounded_rectangle([x, y, x + w, y + h], radius=h // 2, fill=fill)
    font = _font(text_size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), "Shop now", font=font)
    draw.text((x + (w - (x1 - x0)) // 2 - x0, y + (h - (y1 - y0)) // 2 - y0), "Shop now", font=font,
              fill=(255, 255, 255))
    return [x, y, w, h]


def draw_creative(layout: dict) -> tuple[Image.Image, list[dict]]:
    """Render one ad from a layout dict; return the image and its element list (pixel boxes)."""
    image = Image.new("RGB", (SIZE, SIZE), layout["background"])
    draw = ImageDraw.Draw(image)
    for i in range(0, SIZE, 6):  # soft vertical gradient so the background is not perfectly flat
        shade = tuple(max(0, c - i // 30) for c in layout["background"])
        draw.line([(0, i), (SIZE, i)], fill=shade, width=6)
    elements = [
        {"name": "logo", "kind": "logo", "box": _logo(draw, *layout["logo"])},
        {"name": "headline", "kind": "headline",
         "box": _text_box(draw, layout["headline"], "Summer glow, 40% off", 40, (30, 30, 30))},
        {"name": "face", "kind": "face", "box": _face(draw, *layout["face"])},
        {"name": "product", "kind": "product", "box": _product(draw, *layout["product"], (210, 120, 60))},
        {"name": "body", "kind": "body_text",
         "box": _text_box(draw, layout["body"], "Vitamin C serum. Free delivery.", 18, (90, 90, 90))},
        {"name": "cta", "kind": "cta", "box": _cta(draw, *layout["cta"])},
    ]
    return image, elements


BASE = {"background": (246, 238, 226), "logo": (24, 24), "headline": (40, 92), "face": (170, 300, 95),
        "product": (380, 190, 120, 250), "body": (40, 470), "cta": (400, 520, 150, 44, (120, 140, 150), 20)}
VARIANT_B = BASE | {"product": (380, 150, 120, 250), "cta": (340, 440, 230, 72, (220, 40, 60), 30)}


def reference_layout(rng: random.Random) -> dict:
    """A plausible variation of the base layout: positions, sizes and CTA colour jittered."""
    cta_w, cta_h = rng.randint(130, 240), rng.randint(40, 72)
    return BASE | {
        "background": tuple(rng.randint(215, 250) for _ in range(3)),
        "logo": (rng.randint(16, 60), rng.randint(16, 40)),
        "headline": (rng.randint(20, 120), rng.randint(80, 130)),
        "face": (rng.randint(130, 220), rng.randint(270, 330), rng.randint(70, 105)),
        "product": (rng.randint(340, 440), rng.randint(150, 210), 120, 250),
        "body": (rng.randint(20, 140), rng.randint(460, 490)),
        "cta": (rng.randint(20, SIZE - cta_w - 20), rng.randint(515, SIZE - cta_h - 10), cta_w, cta_h,
                tuple(rng.randint(20, 230) for _ in range(3)), 20 if cta_h < 56 else 26),
    }


def _save(layout: dict, png: Path) -> None:
    image, elements = draw_creative(layout)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png, optimize=True)
    rows = ",\n".join("    " + json.dumps(e) for e in elements)  # one element per line: easy to read and diff
    text = f'{{\n  "format": "{SIZE}x{SIZE}",\n  "units": "px",\n  "elements": [\n{rows}\n  ]\n}}\n'
    png.with_suffix(".json").write_text(text, encoding="utf-8")


def main() -> None:
    _save(BASE, HERE / "creative.png")
    _save(VARIANT_B, HERE / "creative_b.png")
    rng = random.Random(20261126)
    for i in range(8):
        _save(reference_layout(rng), HERE / "references" / f"ref_{i:02d}.png")


if __name__ == "__main__":
    main()
