"""Speed of automatic element detection per 1080x1080 creative, against the saliency prediction, in one run.

    PYTHONPATH=python python benchmarks/bench_detect.py [--creatives 8] [--rounds 3]
    FOVEAL_NUM_THREADS=1 PYTHONPATH=python python benchmarks/bench_detect.py
    PYTHONPATH=python python benchmarks/bench_detect.py --creatives 2 --rounds 2 --upscale 9   # 9720x9720, 94 MP

Generated 1080x1080 creatives (benchmarks/creatives.py); after one warm-up pass, each round times, per creative,
detection with the default settings, the same with faces found after the text instead of beside it
(``Detector(concurrent=False)``; the default with one thread), detection with text found at a larger size
(``--alt-short``: the shorter side text detection runs at), and the default Engine's prediction, interleaved so
machine load hits all alike.  Prints medians and ranges in milliseconds, and where detection's time goes (text
lines, buttons and reading, of which the button shapes alone, faces, product).  ``--upscale N`` enlarges each
creative N times (Lanczos) first: detection's cost on a very large image.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root, for benchmarks.creatives
from benchmarks.creatives import DATA, fonts, make_creative, photos
from benchmarks.interleaved import at_least
from foveal import Engine
from foveal.detect import Detector
from foveal.detect.shapes import find_button, product_region


def _ms(values: list[float]) -> dict[str, float]:
    a = np.array(values) * 1000
    return {"median": round(float(np.median(a)), 1), "min": round(float(a.min()), 1), "max": round(float(a.max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creatives", type=at_least(1), default=8)
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--alt-short", type=at_least(32), default=960)
    parser.add_argument("--photos", type=Path, default=DATA)
    parser.add_argument("--upscale", type=at_least(1), default=1, help="enlarge each creative this many times "
                                                                       "(Lanczos)")
    args = parser.parse_args()
    latin, cjk = fonts()
    pics = photos(args.photos)
    if not pics:
        parser.error(f"--photos {args.photos}: no photographs there (the backgrounds of the generated creatives); "
                     "give the shared data folder")
    # Seeds 3, 8, 13... are the 1080x1080 format.
    images = [make_creative(100003 + 5 * i, pics, latin, cjk)[0] for i in range(args.creatives)]
    images = [np.asarray(im.resize((args.upscale * im.width, args.upscale * im.height), Image.Resampling.LANCZOS)
                         if args.upscale > 1 else im) for im in images]
    detector, alt, engine = Detector(), Detector(det_short=args.alt_short), Engine()
    sequential = Detector(concurrent=False)
    timings: dict[str, list[float]] = {"detect": [], "detect_sequential": [], "detect_alt": [], "predict": []}
    stages: dict[str, list[float]] = {"text_lines": [], "buttons_and_read": [], "faces": [], "product": [],
                                      "buttons": []}
    for image in images:  # warm-up: sessions, arenas, page cache
        detector.detect(image), sequential.detect(image), alt.detect(image), engine.predict(image)
    for _ in range(args.rounds):
        for image in images:
            for name, run in (("detect", detector.detect), ("predict", engine.predict),
                              ("detect_sequential", sequential.detect), ("detect_alt", alt.detect)):
                t0 = time.perf_counter()
                run(image)
                timings[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            lines = sequential.text.lines(image)
            t1 = time.perf_counter()
            scale = sequential.text.scale(*image.shape[:2])
            found = [(line, find_button(sequential.cv2, image, line.box, scale)) for line in lines]
            t_buttons = time.perf_counter()
            sequential.text.read(image, [line.box for line, b in found if b is not None])
            t2 = time.perf_counter()
            sequential.faces.detect(image, 0.04 * min(image.shape[:2]))
            t3 = time.perf_counter()
            product_region(sequential.cv2, image, [line.box for line in lines])
            t4 = time.perf_counter()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t_buttons - t1)):
                stages[key].append(value)
    print(json.dumps({"threads": os.environ.get("FOVEAL_NUM_THREADS", "default"), "cpus": os.cpu_count(),
                      "creatives": args.creatives, "rounds": args.rounds, "alt_short": args.alt_short,
                      "size": list(images[0].shape[1::-1]),
                      "ms": {k: _ms(v) for k, v in timings.items()},
                      "detect_stages_ms": {k: _ms(v) for k, v in stages.items()}}, indent=1))


if __name__ == "__main__":
    main()
