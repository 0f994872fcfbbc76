"""int8 against fp32 (and fp16) on ONNX Runtime's CPU provider, interleaved round by round.

    python benchmarks/bench_precision.py                          # default threads
    FOVEAL_NUM_THREADS=1 python benchmarks/bench_precision.py     # one thread
    python benchmarks/bench_precision.py --graph old.int8.onnx    # also any graph file of the same model

Each round runs every graph once on the same input, in turn, so a shared machine's load falls on all of them
alike; the report gives, per graph, the median and range over rounds and the median of the per-round ratios
to fp32 (the robust number on a noisy machine).  The fp32 graph is the baseline: what the float model costs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from foveal import Engine
from foveal.geometry import plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's engine/ (share_agreement)
from benchmarks.interleaved import at_least  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    """An argparse type: ``HxW``, each side a whole number >= 1."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H x W like 600x800, got {text!r}") from None
    if min(h, w) < 1:
        raise argparse.ArgumentTypeError(f"each side must be at least 1, got {text!r}")
    return h, w


def _photo_like(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 32 + 1, w // 32 + 1, 3)).astype(np.uint8).repeat(32, 0).repeat(32, 1)[:h, :w]
    return np.ascontiguousarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="foveal-lite0")
    p.add_argument("--rounds", type=at_least(1), default=30)
    p.add_argument("--size", type=_size, default=(600, 800), help="image H x W (default 600x800)")
    p.add_argument("--graph", type=Path, action="append", default=[], help="another graph file to time")
    args = p.parse_args(argv)
    from engine.share_agreement import graph_engine
    from foveal import _native

    h, w = args.size
    with tempfile.TemporaryDirectory() as tmp:
        engines = {precision: Engine(args.model, precision=precision) for precision in ("fp32", "int8", "fp16")}
        engines.update({str(g): graph_engine(args.model, g, Path(tmp)) for g in args.graph})
        padded = plan(h, w, engines["fp32"].model).padded_hw
        batch = np.random.default_rng(1).standard_normal((1, 3, *padded)).astype(np.float32)
        image = _photo_like(h, w)
        for label, call in (("network", lambda e: e._backend.run(batch)), ("predict", lambda e: e.predict(image))):
            times = {name: [] for name in engines}
            for e in engines.values():
                call(e)  # warm-up
            for _ in range(args.rounds):
                for name, e in engines.items():
                    t0 = time.perf_counter()
                    call(e)
                    times[name].append(time.perf_counter() - t0)
            base = np.array(times["fp32"])
            print(f"{label} {h}x{w} (network input {padded[0]}x{padded[1]}), {_native.num_threads} threads, "
                  f"{args.rounds} interleaved rounds")
            for name, t in times.items():
                t = np.array(t)
                print(f"  {name:<12} median {np.median(t) * 1e3:7.1f} ms  range {t.min() * 1e3:6.1f}-"
                      f"{t.max() * 1e3:6.1f} ms  fp32/this per round: median {np.median(base / t):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
