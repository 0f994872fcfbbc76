"""End-to-end predict vs the bare network call on the same input, per shipped model (CPU, ONNX Runtime).

The bare network time is the baseline measured in the same run: the gap is what decode-free pre/post-processing
costs around it. Run: python -m pytest benchmarks/test_bench_engine.py --benchmark-group-by=param:model
"""
from __future__ import annotations

import numpy as np
import pytest

from foveal import Engine, available_models
from foveal.geometry import plan


@pytest.fixture(scope="module", params=available_models())
def engine(request) -> Engine:
    return Engine(request.param)


@pytest.fixture(scope="module")
def image_1080() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Smooth structure plus noise, so the network sees something image-like.
    base = rng.integers(0, 255, (34, 34, 3)).astype(np.uint8).repeat(32, 0).repeat(32, 1)[:1080, :1080]
    return np.ascontiguousarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def test_network_only(benchmark, engine, image_1080):
    p = plan(1080, 1080, engine.model)
    batch = np.random.default_rng(1).standard_normal((1, 3, *p.padded_hw)).astype(np.float32)
    benchmark.extra_info.update(model=engine.model.name, input=p.padded_hw)
    benchmark(engine._backend.run, batch)


def test_predict_1080(benchmark, engine, image_1080):
    benchmark.extra_info.update(model=engine.model.name)
    smap = benchmark(engine.predict, image_1080)
    assert smap.shape == (1080, 1080)


def test_predict_batch_16_800x600(benchmark, engine):
    images = [np.random.default_rng(i).integers(0, 255, (600, 800, 3), dtype=np.uint8) for i in range(16)]
    benchmark.extra_info.update(model=engine.model.name, images=16)
    maps = benchmark.pedantic(engine.predict_batch, args=(images,), kwargs={"batch_size": 16}, rounds=3, iterations=1)
    assert len(maps) == 16
