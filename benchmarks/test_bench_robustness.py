"""What the robustness checks cost: streaming decode from a checked regular file against the plain read-all
decode, and the per-image output checks against the network call they guard.

Implementations alternate within each round (interleaved), so machine load hits them alike; the table gives the
median and the range over rounds. Run: ``python -m pytest benchmarks/test_bench_robustness.py -s``
(``FOVEAL_NUM_THREADS=1`` for one thread).
"""
from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import Engine
from foveal.imageio import decode

ROUNDS = 40


def _interleaved(impls: dict, rounds: int = ROUNDS) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in impls}
    for r in range(rounds):
        order = list(impls.items()) if r % 2 == 0 else list(reversed(impls.items()))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    for name, values in times.items():
        ms = np.array(values) * 1e3
        print(f"  {name:<44} median {np.median(ms):8.3f} ms  range {ms.min():8.3f} .. {ms.max():8.3f} ms")


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1080, 0:1920]
    pixels = np.stack([(xx // 7) % 256, (yy // 5) % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
    pixels = np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("bench") / "creative.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _read_all_decode(path: Path) -> tuple[np.ndarray, str]:
    """The baseline: read the file whole, hash it, decode from memory (what foveal did before streaming)."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    return pixels, hashlib.sha256(data).hexdigest()


def test_streaming_decode_costs_nothing_measurable(jpeg):
    assert decode(jpeg).sha256 == _read_all_decode(jpeg)[1]
    times = _interleaved({"read whole + decode from memory (baseline)": lambda: _read_all_decode(jpeg),
                          "foveal decode (checked regular file, stream)": lambda: decode(jpeg)})
    _report("decode 1920x1080 JPEG", times)


def test_output_checks_against_the_network(jpeg):
    engine = Engine("default")
    image = decode(jpeg)
    grid = np.random.default_rng(1).standard_normal((1, 1, 27, 48)).astype(np.float32)
    times = _interleaved({"predict (1920x1080, decoded)": lambda: engine.predict(image),
                          "output checks (grid shape, dtype, finite)": lambda: (
                              engine._check_grid(grid, 1, (216, 384)), bool(np.isfinite(grid[0, 0]).all()))})
    _report("per-image output checks vs the whole predict", times)
