"""foveal's decode (file bytes → upright RGB uint8 array, transparency on white) against Pillow and OpenCV, interleaved.

    python benchmarks/decode.py                       # default thread count
    FOVEAL_NUM_THREADS=1 python benchmarks/decode.py  # one thread (OpenCV is held to one thread too)
    python benchmarks/decode.py --load 1              # beside one competing CPU-bound process
    python benchmarks/decode.py --image photo.jpg     # your JPEG instead of the 1920x1080 photograph

Baselines, as a strong engineer would write them: Pillow (``Image.open(...).convert("RGB")``, ``np.asarray``; for a
PNG with transparency ``Image.alpha_composite`` over white first) and OpenCV (``cv2.imdecode`` and ``cv2.cvtColor``
to RGB; for RGBA, ``IMREAD_UNCHANGED`` and the composite in 16-bit NumPy). Every side ends with the same pixels.
The images: a 1920x1080 JPEG photograph (OSIE 1001 enlarged, quality 90, when ../shared/data is there; else
``foveal bench``'s synthetic JPEG), and a 1920x1080 RGBA PNG creative made from it (the photo on a transparent
canvas, 43 % of it clear, with a rounded button).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, compare, competing_load, table  # noqa: E402

from foveal import _native  # noqa: E402
from foveal.bench import synthetic_jpeg  # noqa: E402
from foveal.errors import FovealError  # noqa: E402
from foveal.imageio import decode  # noqa: E402

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "osie" / "stimuli" / "1001.jpg"


def photo_jpeg() -> tuple[bytes, str]:
    if not PHOTO.is_file():
        return synthetic_jpeg(), "foveal bench's synthetic 1920x1080 JPEG"
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((1920, 1080), Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue(), "OSIE 1001 at 1920x1080, quality 90"


def creative_png(jpeg: bytes) -> bytes:
    canvas = Image.new("RGBA", (1920, 1080), (0, 0, 0, 0))
    canvas.paste(Image.open(io.BytesIO(jpeg)).convert("RGBA").resize((1400, 800)), (260, 40))
    ImageDraw.Draw(canvas).rounded_rectangle((700, 880, 1220, 1010), radius=40, fill=(220, 40, 40, 255))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return buf.getvalue()


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pillow_draft(data: bytes, size: tuple[int, int]) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", size)
    return np.asarray(image.convert("RGB"))


def pillow_on_white(data: bytes) -> np.ndarray:
    rgba = Image.open(io.BytesIO(data)).convert("RGBA")
    return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB"))


def cv2_rgb(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def cv2_on_white(data: bytes) -> np.ndarray:
    bgra = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    alpha = bgra[:, :, 3:4].astype(np.uint16)
    rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB).astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    parser.add_argument("--rounds", type=at_least(1), default=30)
    parser.add_argument("--image", default="", help="a JPEG to decode instead of the 1920x1080 photograph")
    args = parser.parse_args()
    if args.image and not os.path.isfile(args.image):
        parser.error(f"--image {args.image}: no such file")
    if args.image:  # checked here, not met as a traceback in the baselines' first use of it
        data = Path(args.image).read_bytes()
        if not data.startswith(b"\xff\xd8\xff"):
            parser.error(f"--image {args.image}: not a JPEG; give a JPEG (the PNG case is made from it)")
        try:
            decode(data)
        except FovealError as exc:
            parser.error(f"--image {args.image}: {exc}")
    if os.environ.get("FOVEAL_NUM_THREADS") == "1":
        cv2.setNumThreads(1)
    jpeg, about = (Path(args.image).read_bytes(), args.image) if args.image else photo_jpeg()
    png = creative_png(jpeg)
    for name, same in (("JPEG", [pillow_rgb(jpeg), cv2_rgb(jpeg)]), ("PNG", [pillow_on_white(png), cv2_on_white(png)])):
        ours = decode(jpeg if name == "JPEG" else png).pixels
        if not all(np.array_equal(ours, pixels) for pixels in same):
            print(f"note: the {name} baselines' pixels differ from foveal's", file=sys.stderr)
    reduced = decode(jpeg, min_side=384).pixels.shape
    print(f"foveal threads {_native.num_threads}, OpenCV threads {cv2.getNumThreads()}, "
          f"competing processes {args.load}, cpus {os.cpu_count()}\nJPEG: {about}, {len(jpeg):,} bytes; "
          f"PNG: the creative, {len(png):,} bytes")
    load = competing_load(args.load) if args.load else contextlib.nullcontext()
    with load:
        print(table("\nJPEG in full", compare({
            "Pillow + np.asarray": lambda: pillow_rgb(jpeg),
            "cv2.imdecode + cvtColor": lambda: cv2_rgb(jpeg),
            "foveal decode": lambda: decode(jpeg),
        }, baseline="Pillow + np.asarray", rounds=args.rounds)))
        print(table(f"\nJPEG reduced to {reduced[1]}x{reduced[0]} (draft)", compare({
            "Pillow draft + np.asarray": lambda: pillow_draft(jpeg, (reduced[1], reduced[0])),
            "foveal decode(min_side=384)": lambda: decode(jpeg, min_side=384),
        }, baseline="Pillow draft + np.asarray", rounds=args.rounds)))
        print(table("\nRGBA PNG, on white", compare({
            "Pillow + alpha_composite": lambda: pillow_on_white(png),
            "cv2.imdecode + NumPy": lambda: cv2_on_white(png),
            "foveal decode": lambda: decode(png),
        }, baseline="Pillow + alpha_composite", rounds=args.rounds)))


if __name__ == "__main__":
    main()
