"""Synthetic ad creatives with known element boxes: the labelled set automatic detection is measured on.

Each creative is drawn with Pillow on a real photograph (softened, or a flat or gradient fill), with a product
shot cut from another photograph, a logo (wordmark, often with a symbol), a headline, body text and a button, in
one of seven languages, a dozen fonts and several button styles, in the common formats.  The true boxes are the
drawn ink (text), the button's shape, the logo's symbol and wordmark together, and the pasted product shot.

    python benchmarks/creatives.py OUT_DIR --count 320 --seed 0

writes ``OUT_DIR/NNNN.png`` and the truth ``OUT_DIR/NNNN.json`` (the standard element file).  Needs the stimuli of
../shared/data (or ``--photos DIR``) and TrueType fonts: Debian's fonts-dejavu-core, fonts-liberation,
fonts-noto-core and fonts-wqy-microhei (Chinese).
"""
from __future__ import annotations

import argparse
import glob
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from foveal.detect import kind_names

FORMATS = ((300, 250), (728, 90), (1200, 628), (1080, 1080), (1080, 1920))
#: The eye-tracking data beside the checkout (../shared/data): its photos are the creatives' backgrounds.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
               "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Bold.ttf",
               "LiberationSansNarrow-Bold.ttf", "NotoSans-Regular.ttf", "NotoSans-Bold.ttf", "NotoSerif-Bold.ttf",
               "NotoSans-BoldItalic.ttf")
CJK_FONTS = ("wqy-microhei.ttc",)
FONT_DIRS = ("/usr/share/fonts/truetype",)

COPY = {
    "en": (["Summer sale is here", "New season, new you", "Fresh coffee every morning", "Run further",
            "The sound of silence", "Made for the weekend"],
           ["Free delivery on orders over 50.", "Limited time only, while stocks last.",
            "Designed in Berlin, built to last.", "Join two million happy customers."],
           ["Shop now", "Learn more", "Buy now", "Sign up", "Get started", "Order today", "Try it free"]),
    "de": (["Der Sommer ist da", "Neue Saison, neuer Stil", "Jeden Morgen frisch"],
           ["Kostenloser Versand ab 50 Euro.", "Nur solange der Vorrat reicht."],
           ["Jetzt kaufen", "Mehr erfahren", "Jetzt bestellen", "Jetzt testen"]),
    "fr": (["Les soldes sont là", "Nouvelle saison", "Le goût du matin"],
           ["Livraison gratuite dès 50 euros.", "Offre valable jusqu'à dimanche."],
           ["Acheter", "Découvrir", "Commander", "En savoir plus"]),
    "es": (["Llegan las rebajas", "Nueva temporada", "Café recién hecho"],
           ["Envío gratis a partir de 50 euros.", "Solo por tiempo limitado."],
           ["Comprar ahora", "Descubre más", "Pide ya", "Reserva"]),
    "it": (["Saldi di stagione", "Nuova collezione"],
           ["Spedizione gratuita da 50 euro.", "Offerta valida fino a domenica."],
           ["Acquista ora", "Scopri di più", "Ordina ora"]),
    "pt": (["Nova coleção", "Promoção de verão"],
           ["Entrega grátis acima de 50 euros.", "Oferta por tempo limitado."],
           ["Compre agora", "Saiba mais", "Descubra"]),
    "zh": (["夏季大促销", "新品上市", "每天新鲜咖啡"],
           ["满五十元免运费", "限时优惠，售完即止"],
           ["立即购买", "了解更多", "马上注册", "立即下载"]),
}
BRANDS = ("AURA", "Novex", "Lumio", "KESTREL", "bloom&co", "Vantara", "ORBIT", "Zenfi", "Halden", "MIRO")


@dataclass
class Truth:
    kind: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    text: str = ""


def fonts() -> tuple[list[str], list[str]]:
    """Paths of the Latin and CJK fonts this machine has."""
    found = {Path(p).name: p for d in FONT_DIRS for p in glob.glob(f"{d}/**/*.tt[fc]", recursive=True)}
    return [found[n] for n in LATIN_FONTS if n in found], [found[n] for n in CJK_FONTS if n in found]


def photos(root: Path) -> list[Path]:
    return sorted(p for sub in ("osie/stimuli", "scene/stimuli") for p in (root / sub).glob("*.jpg"))


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _contrasting(rng: random.Random, under: tuple[int, int, int], min_gap: float = 110) -> tuple[int, int, int]:
    """A colour whose luminance differs from ``under``'s by at least ``min_gap``."""
    for _ in range(200):
        c = tuple(rng.randrange(256) for _ in range(3))
        if abs(_luma(c) - _luma(under)) >= min_gap:
            return c
    return (255, 255, 255) if _luma(under) < 128 else (0, 0, 0)


def _mean_colour(img: Image.Image, box) -> tuple[int, int, int]:
    crop = img.crop(box).resize((1, 1), Image.BOX)
    return crop.getpixel((0, 0))[:3]


def _background(rng: random.Random, size, pics: list[Path]) -> Image.Image:
    w, h = size
    style = rng.choice(("flat", "gradient", "photo", "photo"))
    if style == "flat":
        return Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    if style == "gradient":
        a, b = (tuple(rng.randrange(256) for _ in range(3)) for _ in range(2))
        ramp = Image.linear_gradient("L")
        ramp = (ramp.rotate(90) if rng.random() < 0.5 else ramp).resize(size)
        return Image.composite(Image.new("RGB", size, b), Image.new("RGB", size, a), ramp)
    photo = Image.open(rng.choice(pics)).convert("RGB")
    scale = max(w / photo.width, h / photo.height)
    photo = photo.resize((max(w, int(photo.width * scale + 1)), max(h, int(photo.height * scale + 1))))
    x, y = rng.randrange(photo.width - w + 1), rng.randrange(photo.height - h + 1)
    photo = photo.crop((x, y, x + w, y + h)).filter(ImageFilter.GaussianBlur(max(4, min(w, h) * rng.uniform(0.02, 0.05))))
    tint = Image.new("RGB", size, (0, 0, 0) if rng.random() < 0.5 else (255, 255, 255))
    return Image.blend(photo, tint, rng.uniform(0.2, 0.5))


def _wrap(draw, text, font, max_w) -> list[str]:
    words = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    lines, cur = [], ""
    for word in words:
        trial = (cur + joiner + word) if cur else word
        if cur and draw.textlength(trial, font=font) > max_w:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return lines + [cur]


def _draw_text(img, draw, lines, font, x, y, colour, line_gap) -> tuple[int, int, int, int]:
    """Draw lines from (x, y) downwards; return the union of their ink boxes."""
    boxes = []
    for line in lines:
        box = draw.textbbox((x, y), line, font=font)
        draw.text((x, y), line, font=font, fill=colour)
        boxes.append(box)
        y = box[3] + line_gap
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _text_size(draw, lines, font, line_gap) -> tuple[int, int]:
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    return max(b[2] for b in boxes), sum(b[3] for b in boxes) + line_gap * (len(lines) - 1)


def make_creative(seed: int, pics: list[Path], latin: list[str], cjk: list[str]) -> tuple[Image.Image, list[Truth]]:
    """One creative and its true boxes, the same for the same seed."""
    rng = random.Random(seed)
    w, h = FORMATS[seed % len(FORMATS)]
    lang = rng.choice([k for k in COPY if k != "zh" or cjk])
    font_path = rng.choice(cjk if lang == "zh" else latin)
    heads, bodies, ctas = COPY[lang]
    img = _background(rng, (w, h), pics)
    draw = ImageDraw.Draw(img)
    truth: list[Truth] = []
    banner = w > 3 * h
    short = min(w, h)
    margin = max(6, int(short * rng.uniform(0.04, 0.07)))

    # Product shot: a crop of a photograph, in its own column (banners) or half.
    pw_frac = rng.uniform(0.3, 0.42)
    if banner:
        ph = int(h * rng.uniform(0.7, 0.85))
        pw = int(ph * rng.uniform(0.8, 1.3))
        px, py = int(w * rng.uniform(0.42, 0.5)), (h - ph) // 2
    elif h > 1.4 * w:
        pw = int(w * rng.uniform(0.55, 0.75))
        ph = int(pw * rng.uniform(0.8, 1.2))
        px, py = (w - pw) // 2, int(h * rng.uniform(0.3, 0.4))
    else:
        pw = int(w * pw_frac)
        ph = int(min(h * 0.7, pw * rng.uniform(0.8, 1.3)))
        px, py = w - margin - pw, (h - ph) // 2
    shot = Image.open(rng.choice(pics)).convert("RGB")
    cw, ch = shot.width // 2, shot.height // 2
    cx, cy = rng.randrange(shot.width - cw + 1), rng.randrange(shot.height - ch + 1)
    img.paste(shot.crop((cx, cy, cx + cw, cy + ch)).resize((pw, ph)), (px, py))
    truth.append(Truth("product", (px, py, px + pw, py + ph)))

    # Logo: a wordmark, often with a symbol, in a corner.
    logo_h = int(h * rng.uniform(0.18, 0.25)) if banner else int(short * rng.uniform(0.035, 0.055))
    lfont = ImageFont.truetype(rng.choice(latin), max(9, logo_h))
    brand = rng.choice(BRANDS)
    tw, _ = _text_size(draw, [brand], lfont, 0)
    icon = rng.random() < 0.6
    iw = int(logo_h * 1.2) if icon else 0
    gap = int(logo_h * 0.3) if icon else 0
    total_w = iw + gap + tw
    corner = "tl" if banner else rng.choice(("tl", "tr", "bl", "br"))
    lx = margin if corner[1] == "l" else w - margin - total_w
    ly = (h - logo_h) // 2 if banner else (margin if corner[0] == "t" else h - margin - int(logo_h * 1.3))
    under = _mean_colour(img, (lx, ly, lx + total_w, ly + int(logo_h * 1.3)))
    lcol = _contrasting(rng, under)
    boxes = []
    if icon:
        ib = (lx, ly, lx + iw, ly + iw)
        getattr(draw, rng.choice(("ellipse", "rectangle")))(ib, fill=lcol)
        boxes.append(ib)
    tb = draw.textbbox((lx + iw + gap, ly), brand, font=lfont)
    draw.text((lx + iw + gap, ly), brand, font=lfont, fill=lcol)
    boxes.append(tb)
    truth.append(Truth("logo", (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                                max(b[3] for b in boxes)), brand))

    # Text column: where the product and logo are not.
    if banner:
        col = (lx + total_w + int(h * rng.uniform(0.3, 0.6)), margin // 2, px - margin, h - margin // 2)
    elif h > 1.4 * w:
        top = margin * 2 + int(logo_h * 1.4) if corner[0] == "t" else margin
        col = (margin, top, w - margin, py - margin)
    else:
        col = (margin, margin * 2 + int(logo_h * 1.4) if corner[0] == "t" else margin, px - margin,
               h - margin - (int(logo_h * 1.5) if corner[0] == "b" else 0))
    col_w = col[2] - col[0]
    head_px = int(h * rng.uniform(0.22, 0.3)) if banner else int(short * rng.uniform(0.06, 0.1))
    headline, body, cta_text = rng.choice(heads), rng.choice(bodies), rng.choice(ctas)
    body_on = not banner and rng.random() < 0.8
    body_font = rng.choice(cjk if lang == "zh" else latin)
    cta_font = rng.choice(cjk if lang == "zh" else latin)
    body_ratio, cta_ratio = rng.uniform(0.4, 0.55), rng.uniform(0.45, 0.65)
    pad_ry, pad_rx = rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.5)
    spacing_r = rng.uniform(0.4, 0.8)
    while True:  # shrink the type until the stack fits its column
        hfont = ImageFont.truetype(font_path, max(10, head_px))
        hlines = _wrap(draw, headline, hfont, col_w)
        bfont = ImageFont.truetype(body_font, max(9, int(hfont.size * body_ratio)))
        blines = _wrap(draw, body, bfont, col_w) if body_on else []
        cfont = ImageFont.truetype(cta_font, max(9, int(hfont.size * cta_ratio)))
        ctw, cth = _text_size(draw, [cta_text], cfont, 0)
        pad_y, pad_x = int(cth * pad_ry), int(cth * pad_rx)
        bw, bh = ctw + 2 * pad_x, cth + 2 * pad_y
        gap_y = int(hfont.size * 0.15)
        hw_, hh = _text_size(draw, hlines, hfont, gap_y)
        bh_text = _text_size(draw, blines, bfont, gap_y)[1] if blines else 0
        spacing = int(hfont.size * spacing_r)
        stack = hh if banner else hh + (spacing + bh_text if blines else 0) + spacing + bh
        widest = max(hw_, bw, _text_size(draw, blines, bfont, gap_y)[0] if blines else 0)
        fits = stack <= col[3] - col[1] and widest <= col_w and len(hlines) <= (1 if banner else 3)
        if fits or head_px <= 10:
            break
        head_px = int(head_px * 0.9)
    if banner:
        y = (h - hh) // 2
        hx = col[0]
        hbox = _draw_text(img, draw, hlines, hfont, hx, y - draw.textbbox((0, 0), hlines[0], font=hfont)[1],
                          _contrasting(rng, _mean_colour(img, (hx, y, hx + hw_, y + hh))), gap_y)
        truth.append(Truth("headline", hbox, headline))
        bx, by = w - margin - bw, (h - bh) // 2
    else:
        y = col[1] + max(0, int((col[3] - col[1] - stack) * rng.uniform(0.0, 0.5)))
        hbox = _draw_text(img, draw, hlines, hfont, col[0], y - draw.textbbox((0, 0), hlines[0], font=hfont)[1],
                          _contrasting(rng, _mean_colour(img, (col[0], y, col[0] + hw_, y + hh))), gap_y)
        truth.append(Truth("headline", hbox, headline))
        y = hbox[3] + spacing
        if blines:
            bw_, bht = _text_size(draw, blines, bfont, gap_y)
            bbox = _draw_text(img, draw, blines, bfont, col[0], y - draw.textbbox((0, 0), blines[0], font=bfont)[1],
                              _contrasting(rng, _mean_colour(img, (col[0], y, col[0] + bw_, y + bht))), gap_y)
            truth.append(Truth("body_text", bbox, " ".join(blines)))
            y = bbox[3] + spacing
        bx, by = col[0], y
    # Button: a filled shape (rectangle, rounded, pill; sometimes an outline in a second colour).
    under = _mean_colour(img, (bx, by, bx + bw, by + bh))
    fill = _contrasting(rng, under, 90)
    style = rng.choice(("rect", "round", "pill"))
    radius = {"rect": 0, "round": int(bh * 0.2), "pill": bh // 2}[style]
    outline = _contrasting(rng, fill, 60) if rng.random() < 0.25 else None
    draw.rounded_rectangle((bx, by, bx + bw - 1, by + bh - 1), radius=radius, fill=fill, outline=outline,
                           width=max(1, bh // 16) if outline else 0)
    tcol = _contrasting(rng, fill, 110)
    off = draw.textbbox((0, 0), cta_text, font=cfont)
    draw.text((bx + pad_x - off[0], by + pad_y - off[1]), cta_text, font=cfont, fill=tcol)
    truth.append(Truth("cta", (bx, by, bx + bw, by + bh), cta_text))
    return img, truth


def truth_file(truth: list[Truth], size) -> dict:
    elements = []
    for name, t in zip(kind_names([t.kind for t in truth]), truth):
        x0, y0, x1, y1 = t.box
        elements.append({"name": name, "kind": t.kind, "box": [x0, y0, x1 - x0, y1 - y0], "text": t.text})
    return {"format": f"{size[0]}x{size[1]}", "units": "px", "elements": elements}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=Path, default=DATA)
    args = parser.parse_args()
    latin, cjk = fonts()
    pics = photos(args.photos)
    if not latin or not pics:
        raise SystemExit(f"need TrueType fonts ({', '.join(LATIN_FONTS[:2])}...) and photos under {args.photos}")
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.seed, args.seed + args.count):
        img, truth = make_creative(i, pics, latin, cjk)
        img.save(args.out / f"{i:04d}.png")
        (args.out / f"{i:04d}.json").write_text(json.dumps(truth_file(truth, img.size), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
