"""End to end on JPEGs, interleaved: predict on 1920x1080, predict_batch(16) against one by one, foveal score DIR.

    python benchmarks/engine_e2e.py                       # default thread count
    FOVEAL_NUM_THREADS=1 python benchmarks/engine_e2e.py  # one thread
    python benchmarks/engine_e2e.py --load 1              # beside one competing CPU-bound process

Baselines, run in the same rounds:
- "full decode": the same Engine's stages called one by one (the library's full-size JPEG decode, preprocess, network,
  ``cpu.postprocess`` and a separate ``cpu.summed_area_table`` on the first box query): the path the engine took
  before it built the table with the map. ``predict`` runs against it by default (full decode) and with
  ``Engine(reduced_decode=True)``.
- one by one: ``[engine.predict(p) for p in paths]`` against ``engine.predict_batch(paths, 16)``.
- ``foveal score DIR`` with reports, its PNGs written by Pillow at its default zlib level 6 (as foveal once
  wrote them) against foveal's own encoder.
Peak memory of ``predict_batch`` is the resident-set growth (sampled) at 16 and 32 images, returned maps included.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, compare, competing_load, seconds, table  # noqa: E402

from foveal import Engine, _native, cpu, fileio  # noqa: E402
from foveal.bench import synthetic_jpeg  # noqa: E402
from foveal.cli import main as cli_main  # noqa: E402
from foveal.geometry import plan  # noqa: E402
from foveal.imageio import decode  # noqa: E402
from foveal.scoring import report  # noqa: E402
from foveal.saliency_map import SaliencyMap  # noqa: E402

BOXES = [[100, 100, 400, 200], [800, 500, 300, 100], [0, 0, 1920, 1080]]


def full_decode_predict(engine: Engine, data: bytes) -> float:
    """The pre-issue-20 path: full decode, postprocess, then the SAT built by the first box query."""
    pixels = decode(data, engine.max_pixels).pixels
    spec, p = engine.model.input, plan(*pixels.shape[:2], engine.model)
    grid = engine._backend.run(cpu.preprocess(pixels, p.resized_hw, p.padded_hw, spec.mean, spec.std,
                                              p.offset_hw))[0, 0]
    prob = cpu.postprocess(grid, p.image_hw, p.valid_hw, engine.blur_sigma, p.origin_hw)
    return float(SaliencyMap(prob).box_stats(BOXES)["share"][0])


def engine_predict(engine: Engine, data: bytes) -> float:
    return float(engine.predict(data).box_stats(BOXES)["share"][0])


def write_jpegs(folder: Path, n: int, hw: tuple[int, int]) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.jpg"
        path.write_bytes(synthetic_jpeg(*hw, seed=i))
        (folder / f"img{i:02d}.json").write_text(json.dumps([
            {"name": "cta", "kind": "cta", "box": [hw[1] // 2, hw[0] // 2, 200, 60]},
            {"name": "headline", "kind": "headline", "box": [40, 40, hw[1] // 2, 80]}]))
        paths.append(path)
    return paths


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def peak_mib(fn) -> float:
    """Peak resident memory above the start while ``fn`` runs (sampled every 2 ms; native buffers included)."""
    start, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_mib()) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    parser.add_argument("--rounds", type=at_least(1), default=15)
    parser.add_argument("--max-seconds", type=seconds, default=60.0, help="per comparison")
    parser.add_argument("--parts", default="predict,batch,score", help="which comparisons (comma-separated)")
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - {"predict", "batch", "score"}
    if unknown or not args.parts:
        parser.error(f"--parts takes predict, batch and score, comma-separated; got {args.parts!r}")
    engine, reduced = Engine(), Engine(reduced_decode=True)
    print(f"foveal threads {_native.num_threads}, competing processes {args.load}, cpus {os.cpu_count()}, "
          f"{engine.model.name} {engine.precision} on {engine.backend}")
    hd = synthetic_jpeg(1080, 1920)
    load = competing_load(args.load) if args.load else contextlib.nullcontext()
    parts = set(args.parts.split(","))
    with load, tempfile.TemporaryDirectory() as tmp:
        if "predict" in parts:
            print(table("\npredict, 1920x1080 JPEG, + 3 box shares", compare({
                "full decode, SAT on first query": lambda: full_decode_predict(engine, hd),
                "foveal predict(bytes)": lambda: engine_predict(engine, hd),
                "foveal predict(bytes), reduced decode": lambda: engine_predict(reduced, hd),
            }, baseline="full decode, SAT on first query", rounds=args.rounds, max_seconds=args.max_seconds)))
        if "batch" in parts:
            batch(engine, Path(tmp), args)
        if "score" in parts:
            score_dir(Path(tmp), args)


def batch(engine: Engine, tmp: Path, args: argparse.Namespace) -> None:
    """predict_batch(16) against one by one on 16 1080² JPEGs, and peak memory at 16 and 32 images."""
    square = write_jpegs(tmp, 16, (1080, 1080))
    print(table("\n16 JPEGs 1080x1080 (per 16 images)", compare({
        "one by one predict": lambda: [engine.predict(p) for p in square],
        "predict_batch(16)": lambda: engine.predict_batch(square, batch_size=16),
    }, baseline="one by one predict", rounds=max(3, args.rounds // 3), max_seconds=args.max_seconds)))
    print("\npredict_batch peak RSS growth (MiB): " + ", ".join(
        f"{n} images {peak_mib(lambda: engine.predict_batch((square * 2)[:n], batch_size=16)):.0f}"
        for n in (16, 32)) + f" (one map + its SAT: {(1080 * 1080 * 4 + 1081 * 1081 * 8) / 2**20:.1f} MiB)")


def pillow_write_png(fh: Any, array: np.ndarray, text: dict[str, str] | None = None) -> None:
    """A PNG as foveal wrote it before it had its own encoder: Pillow at its default zlib level 6."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.fromarray(array).save(fh, format="PNG", pnginfo=info)


def pillow_encode_png(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    pillow_write_png(buf, array, text)
    return buf.getvalue()


def score_dir(tmp: Path, args: argparse.Namespace) -> None:
    """foveal score DIR with reports, its PNGs written by Pillow at its default level 6 against foveal's encoder."""
    folder = tmp / "dir"
    folder.mkdir()
    write_jpegs(folder, 4, (1080, 1920))
    runs = iter(range(10_000))
    ours = fileio.write_png, report.encode_png

    def score(writers: tuple[Any, Any]) -> None:
        # Looked up at call time: save_png (the overlay) calls fileio.write_png, the page's embedded PNGs
        # report.encode_png.
        fileio.write_png, report.encode_png = writers
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                assert cli_main(["-q", "score", str(folder), "-o", str(tmp / f"out{next(runs)}")]) == 0
        finally:
            fileio.write_png, report.encode_png = ours

    timings = compare({"score DIR, Pillow PNGs level 6": lambda: score((pillow_write_png, pillow_encode_png)),
                       "score DIR, foveal PNGs": lambda: score(ours)},
                      baseline="score DIR, Pillow PNGs level 6", rounds=max(3, args.rounds // 3),
                      max_seconds=args.max_seconds)
    print(table("\nfoveal score DIR, 4 JPEGs 1920x1080 with reports (per folder)", timings))
    print("images/s: " + ", ".join(f"{t.name} {4e3 / t.median_ms:.2f}" for t in timings))


if __name__ == "__main__":
    main()
