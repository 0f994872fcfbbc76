"""End-to-end predict vs the bare network call on the same input, per shipped model and graph (CPU, ONNX Runtime),
and each int8 graph against its fp32 graph.

The bare network time is the baseline measured in the same run: the gap is what pre/post-processing around it
costs. Also: foveal's ONNX Runtime sessions, whose pool threads sleep between runs, against ORT's default of
spinning. Run: python -m pytest benchmarks/test_bench_engine.py
"""
from __future__ import annotations

import numpy as np
import pytest

from foveal import Engine, available_models, load_card
from foveal.geometry import plan

GRAPHS = [(name, precision) for name in available_models() for precision in load_card(name).precisions]


@pytest.fixture(scope="module", params=GRAPHS, ids=[f"{n}-{p}" for n, p in GRAPHS])
def engine(request) -> Engine:
    name, precision = request.param
    return Engine(name, precision=precision)


def _label(engine: Engine) -> str:
    return f"{engine.model.name} {engine.precision}"


def _photo_like(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Blocky structure plus noise, so the network sees something image-like.
    base = rng.integers(0, 255, (h // 32 + 1, w // 32 + 1, 3)).astype(np.uint8).repeat(32, 0).repeat(32, 1)[:h, :w]
    return np.ascontiguousarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("impl", ["network only", "predict (end to end)"])
@pytest.mark.parametrize("hw", [(1080, 1080), (600, 800)])
def test_network_vs_predict(record, engine, hw, impl):
    p = plan(*hw, engine.model)
    group = f"{_label(engine)} {hw[0]}x{hw[1]} (input {p.padded_hw[0]}x{p.padded_hw[1]})"
    if impl == "network only":
        batch = np.random.default_rng(1).standard_normal((1, 3, *p.padded_hw)).astype(np.float32)
        record(group, impl, engine._backend.run, batch, baseline=True)
    else:
        assert record(group, impl, engine.predict, _photo_like(*hw, seed=0)).shape == hw


@pytest.mark.parametrize("impl", ["predict one by one", "predict_batch(16)"])
def test_predict_16_images(record, engine, impl):
    images = [_photo_like(600, 800, seed=i) for i in range(16)]
    group = f"{_label(engine)} 16 x 800x600"
    if impl == "predict one by one":
        record(group, impl, lambda: [engine.predict(i) for i in images], baseline=True)
    else:
        assert len(record(group, impl, engine.predict_batch, images)) == 16


@pytest.mark.parametrize("name", [n for n, p in GRAPHS if p == "int8"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_int8_vs_fp32_network(record, name, precision):
    engine = Engine(name, precision=precision)
    p = plan(600, 800, engine.model)
    batch = np.random.default_rng(1).standard_normal((1, 3, *p.padded_hw)).astype(np.float32)
    group = f"{name} network {p.padded_hw[0]}x{p.padded_hw[1]}: int8 vs fp32"
    record(group, precision, engine._backend.run, batch, baseline=precision == "fp32")


@pytest.mark.parametrize("threads", ["spinning (ORT default)", "sleeping (foveal)"])
def test_spinning_vs_sleeping_pool_threads(record, threads):
    import onnxruntime as ort

    engine, spinning = Engine(), threads.startswith("spinning")
    if spinning:
        # The same graph and options, with ORT's default restored: pool threads spin after each run.
        options = engine._backend._session.get_session_options()
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        graph = engine.model.variant(engine.precision).onnx_path
        engine._backend._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    group = f"{_label(engine)} predict 800x600: ORT pool threads"
    record(group, threads, engine.predict, _photo_like(600, 800, seed=0), baseline=spinning)
