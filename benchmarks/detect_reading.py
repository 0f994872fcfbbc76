"""Reading the lines on buttons: runs of similar width (foveal) against one run padded to the widest line.

    python benchmarks/detect_reading.py                       # default thread count
    FOVEAL_NUM_THREADS=1 python benchmarks/detect_reading.py  # one thread
    python benchmarks/detect_reading.py --load 1              # beside one competing CPU-bound process

The creative is a page of small "Go now" buttons and one 150-character bar (1280x640); the lines are the ones
detection finds on buttons. The baseline is the way they were read before: every crop in one recognition run,
padded to the widest, decoded the same way. Needs the detect extra.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from creatives import fonts  # noqa: E402
from interleaved import at_least, compare, competing_load, table  # noqa: E402

from foveal.detect import Detector  # noqa: E402
from foveal.detect.shapes import find_button  # noqa: E402


def page(buttons: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(fonts()[0][0], 12)
    img = Image.new("RGB", (1280, 640), "white")
    draw = ImageDraw.Draw(img)
    bar = ("Shop now and save big today " * 6)[:150]
    draw.rectangle((10, 4, 34 + int(font.getlength(bar)), 40), fill=(20, 90, 200))
    draw.text((22, 16), bar, fill="white", font=font)
    spots = [(x, y) for y in range(55, 610, 45) for x in range(20, 1188, 102)][:buttons]
    for x, y in spots:
        draw.rectangle((x, y, x + 72, y + 31), fill=(200, 40, 40))
        draw.text((x + 12, y + 9), "Go now", fill="white", font=font)
    return np.asarray(img)


def one_run(reader, rgb: np.ndarray, boxes: list) -> list[str]:
    """Every crop in one run, padded to the widest: how lines on buttons were read before."""
    cv2 = reader.cv2
    crops = []
    for x0, y0, x1, y1 in boxes:
        crop = rgb[y0:y1, x0:x1, ::-1]
        width = max(1, int(np.ceil(48 * crop.shape[1] / crop.shape[0])))
        crops.append(cv2.resize(crop, (width, 48), interpolation=cv2.INTER_LINEAR))
    batch = np.zeros((len(crops), 3, 48, max(c.shape[1] for c in crops)), np.float32)
    for i, c in enumerate(crops):
        batch[i, :, :, :c.shape[1]] = (c.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
    return [p.argmax(1) for p in reader._rec.run(None, {"x": batch})[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buttons", type=at_least(1), default=60, help="buttons on the page (at most 156)")
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    args = parser.parse_args()
    detector = Detector(faces=False)
    reader = detector.text
    rgb = page(args.buttons)
    scale = reader.scale(*rgb.shape[:2])
    boxes = [line.box for line in reader.lines(rgb) if find_button(detector.cv2, rgb, line.box, scale) is not None]
    print(f"{len(boxes)} lines on buttons; widest {max(b[2] - b[0] for b in boxes)} px")
    with competing_load(args.load) if args.load else contextlib.nullcontext():
        print(table(f"\nreading {len(boxes)} lines on buttons", compare({
            "one run, padded to the widest": lambda: one_run(reader, rgb, boxes),
            "foveal runs of similar width": lambda: reader.read(rgb, boxes)},
            baseline="one run, padded to the widest", rounds=args.rounds, warmup=1, max_seconds=900)))


if __name__ == "__main__":
    main()
