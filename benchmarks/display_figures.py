"""Figures and pages of a large creative: shown reduced to report.DISPLAY_PIXELS against drawn at full size.

    python benchmarks/display_figures.py --side 4000                       # default thread count
    FOVEAL_NUM_THREADS=1 python benchmarks/display_figures.py --side 4000  # one thread

The baseline is the same code with the limit lifted (every panel and embedded image at the creative's full size),
interleaved with the shipped limit in one process: `compare_figure` + `encode_png` (compare.png), and
`render_html` of a score report (its two embedded JPEGs). The creative is blurred noise, as hard to compress as
a photograph's texture; the map is a real prediction of it.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, compare, competing_load, table  # noqa: E402

import cv2  # noqa: E402

from foveal import Engine  # noqa: E402
from foveal.fileio import encode_png  # noqa: E402
from foveal.scoring import compare as comparing  # noqa: E402
from foveal.scoring import report  # noqa: E402
from foveal.scoring.elements import Element  # noqa: E402
from foveal.scoring.recommend import recommend  # noqa: E402
from foveal.scoring.scores import score_creative  # noqa: E402


@contextlib.contextmanager
def limit(pixels: int):
    saved, report.DISPLAY_PIXELS = report.DISPLAY_PIXELS, pixels
    try:
        yield
    finally:
        report.DISPLAY_PIXELS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=at_least(100), default=4000, help="the creative's side in pixels")
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    args = parser.parse_args()
    side = args.side
    image = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (side, side, 3), np.uint8), (0, 0), 2)
    with Engine() as engine:
        smap = engine.predict(image)
    elements = (Element("cta", "cta", (side // 2, side // 2, side // 3, side // 10)),)
    scores = score_creative(smap, elements)
    diff = comparing.difference_map(smap.prob, smap.prob)
    doc = report.build_document(scores, recommend(scores), smap.provenance, image="big.png", elements="big.json",
                                norms=None)
    overlay = report.draw_boxes(smap.overlay(image), scores)

    def figure_png() -> bytes:
        return encode_png(comparing.compare_figure(image, smap, scores, image, smap, scores, diff))

    def full_size(run):
        def call():
            with limit(side * side):
                return run()
        return call

    def page() -> str:
        return report.render_html(doc, image, overlay)

    print(f"{side}x{side} creative: compare.png {len(figure_png()) / 1e6:.1f} MB reduced, "
          f"{len(full_size(figure_png)()) / 1e6:.1f} MB full size; report.html {len(page()) / 1e6:.1f} MB reduced, "
          f"{len(full_size(page)()) / 1e6:.1f} MB full size")
    with competing_load(args.load) if args.load else contextlib.nullcontext():
        print(table(f"\ncompare figure + PNG, {side}x{side}", compare({
            "full size": full_size(figure_png), "reduced": figure_png}, baseline="full size", rounds=args.rounds,
            warmup=0, max_seconds=600)))
        print(table(f"\nscore report page, {side}x{side}", compare({
            "full size": full_size(page), "reduced": page}, baseline="full size", rounds=args.rounds, warmup=0,
            max_seconds=600)))


if __name__ == "__main__":
    main()
