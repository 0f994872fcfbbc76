"""The torch backend's logic on CPU tensors (the device is a parameter), its errors, and — on a CUDA machine — the
torch backend against its PyTorch definition on the CPU and the TensorRT backend against ONNX Runtime on the CPU
(each against the same graph it runs; engine/'s own tests check that the exported ONNX matches the definition)."""
from __future__ import annotations

import numpy as np
import pytest

from foveal import backends, gpu
from foveal.backends import torch_cuda
from foveal.backends.onnxruntime import OnnxRuntimeBackend
from foveal.errors import BackendUnavailableError
from foveal.models import load_card

pytest.importorskip("torch", reason="PyTorch not installed")


@pytest.fixture(scope="module")
def card():
    return load_card("itti-koch")


@pytest.fixture(scope="module")
def batch(card):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (2, 3, 288, 384)).astype(np.float32) - np.float32(card.input.mean[0])) / np.float32(
        card.input.std[0])


def reference(name: str, card, x: np.ndarray) -> np.ndarray:
    """What ``name`` must reproduce: the PyTorch definition in float32 on the CPU, or ONNX Runtime's CPU run."""
    if name != "torch":
        return OnnxRuntimeBackend(card).run(x)
    import torch

    with torch.inference_mode():
        return torch_cuda.load_network(card)(torch.from_numpy(x)).numpy()


def test_torch_backend_on_cpu_matches_the_definition(card, batch) -> None:
    backend = torch_cuda.TorchBackend(card, device="cpu")
    assert backend.device == "cpu" and not backend.on_gpu
    out = backend.run(batch)
    expected = reference("torch", card, batch)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-2)  # channels-last reorders float sums


def test_itti_koch_read_out_comes_from_the_card(card) -> None:
    network = torch_cuda.load_network(card)
    assert network.readout.contrast == card.raw["provenance"]["training"]["readout"]["contrast"]


def test_user_onnx_without_a_torch_definition_is_unavailable(card, tmp_path) -> None:
    onnx = tmp_path / "mine.onnx"
    onnx.write_bytes(card.onnx_path.read_bytes())
    with pytest.raises(BackendUnavailableError, match="no PyTorch definition for model 'mine'"):
        torch_cuda.load_network(load_card(onnx))


def test_cuda_device_without_gpu_is_unavailable(card) -> None:
    if gpu.unavailable() is None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match="torch backend"):
        torch_cuda.TorchBackend(card)


def emulated_engine(monkeypatch, card, working_size: int | None = None):
    """An Engine whose GPU branch runs: foveal.gpu on the CPU emulation, the network on ONNX Runtime behind a
    stand-in GPU backend (``working_size`` shrinks the card's input so the emulation stays fast)."""
    import contextlib
    import dataclasses

    from test_gpu_emulator import emulated_gpu

    from foveal import Engine

    _, xp = emulated_gpu(monkeypatch)
    engine = Engine(card.name, device="cpu")
    ort = engine._backend

    class EmulatedGpuBackend:
        name, device, on_gpu, precision = "emulated", "cuda:0", True, ort.precision
        stream = contextlib.nullcontext()

        def run(self, batch):
            assert isinstance(batch, xp.ndarray), "the Engine must hand the network a device array"
            return xp.asarray(ort.run(np.asarray(batch)))

    monkeypatch.setattr(engine, "_backend", EmulatedGpuBackend())
    if working_size is not None:
        engine.model = dataclasses.replace(card, input=dataclasses.replace(card.input, working_size=working_size))
    return engine


def test_engine_gpu_branch_on_emulated_kernels(monkeypatch, card, rgb) -> None:
    """The Engine's GPU branch (batched foveal.gpu launches around the network, on the backend's stream) gives the
    CPU branch's maps, as device-resident maps. This breaks loudly if the Engine's GPU wiring changes shape."""
    from foveal import DeviceSaliencyMap, Engine

    emulated, on_cpu = emulated_engine(monkeypatch, card), Engine(card.name, device="cpu")
    images = [rgb, np.ascontiguousarray(rgb[::-1, ::2]), rgb]
    for a, b in zip(emulated.predict_batch(images), on_cpu.predict_batch(images)):
        assert isinstance(a, DeviceSaliencyMap) and a._host is None, "the map must stay on the device"
        assert a.shape == b.shape and type(a.prob) is np.ndarray
        np.testing.assert_allclose(a.prob, b.prob, rtol=1e-4, atol=1e-10)


def test_two_threads_on_one_gpu_engine_give_the_serial_results(monkeypatch, card) -> None:
    """Two threads share one GPU Engine (emulated kernels): every map, and every box query on it made from the
    other threads, equals bit for bit what the same calls made one after another give."""
    from concurrent.futures import ThreadPoolExecutor

    engine = emulated_engine(monkeypatch, card, working_size=32)
    rng = np.random.default_rng(3)
    jobs = [[rng.integers(0, 256, (16 + 8 * j, 24, 3), dtype=np.uint8)] for j in range(2)]  # one image a thread
    boxes = np.array([[0, 0, 8, 8], [4, 6, 20, 10]])

    def run(images):
        maps = engine.predict_batch(images)
        return [(m.box_stats(boxes)["share"], m.prob.copy()) for m in maps]

    serial = [run(images) for images in jobs]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(run, jobs))
    for expected, got in zip(serial, threaded):
        for (share_a, prob_a), (share_b, prob_b) in zip(expected, got):
            np.testing.assert_array_equal(prob_b, prob_a)
            np.testing.assert_array_equal(share_b, share_a)


def test_closing_a_gpu_engine_lets_the_running_batch_finish_then_frees_its_backend(monkeypatch, card, rgb) -> None:
    """close() during a GPU batch (emulated kernels): the batch ends with its device maps, the backend (its
    engines, graphs and buffers) is dropped as it ends, and later calls are refused."""
    import threading
    import weakref

    from foveal import DeviceSaliencyMap, InputError

    engine = emulated_engine(monkeypatch, card, working_size=32)
    entered, go = threading.Event(), threading.Event()

    class Held(type(engine._backend)):  # a class, not a patched method, which would refer to the backend itself
        def run(self, batch):
            entered.set()
            assert go.wait(60)
            return super().run(batch)

    engine._backend.__class__ = Held
    released, maps = weakref.ref(engine._backend), []
    worker = threading.Thread(target=lambda: maps.extend(engine.predict_batch([rgb, rgb[::-1].copy()])))
    worker.start()
    try:
        assert entered.wait(60)
        engine.close()
        assert released() is not None, "freed under the running batch"
    finally:
        go.set()
        worker.join(60)
    assert len(maps) == 2 and all(isinstance(m, DeviceSaliencyMap) for m in maps)
    assert abs(float(maps[0].prob.sum(dtype=np.float64)) - 1) < 1e-5
    assert released() is None
    with pytest.raises(InputError, match="is closed; make a new Engine"):
        engine.predict(rgb)


def softmax(log_density: np.ndarray) -> np.ndarray:
    e = np.exp(log_density - log_density.max(axis=(2, 3), keepdims=True))
    return e / e.sum(axis=(2, 3), keepdims=True)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch", "tensorrt"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("fp16", [False, True])
def test_gpu_backend_matches_its_reference(name, n, fp16, card, batch) -> None:
    why = backends.unavailable_reason(name)
    if why is not None:
        pytest.skip(f"{name} backend unavailable here: {why}")
    import cupy

    backend = backends.select(card, [name], strict=True, fp16=fp16)
    x = np.concatenate([batch] * 2)[:n]
    out = backend.run(cupy.asarray(x))
    assert isinstance(out, cupy.ndarray) and out.dtype == np.float32 and out.shape[:2] == (n, 1)
    got, expected = cupy.asnumpy(out), reference(name, card, x)
    if fp16:
        # Half precision: judge it as the probability map sees it, by the share of mass that moves (< 2%).
        moved = 0.5 * np.abs(softmax(got) - softmax(expected)).sum(axis=(1, 2, 3))
        assert moved.max() < 0.02, moved
    else:
        # float32 (cuDNN may use TF32 for convolutions); the additive constant is irrelevant.
        np.testing.assert_allclose(got - got.max(axis=(2, 3), keepdims=True),
                                   expected - expected.max(axis=(2, 3), keepdims=True), atol=2e-2)
    again = cupy.asnumpy(backend.run(cupy.asarray(x)))  # batch 1 replays the captured CUDA graph
    np.testing.assert_allclose(again, got, rtol=0, atol=1e-6)


@pytest.mark.gpu
def test_engine_on_cuda_agrees_with_cpu(rgb) -> None:
    available = backends.available_backends()
    if gpu.unavailable() is not None or not {"tensorrt", "torch"} & set(available) or "onnxruntime" not in available:
        pytest.skip(f"needs a GPU backend and onnxruntime: {gpu.unavailable() or available}")
    from foveal import Engine

    on_gpu, on_cpu = Engine("itti-koch", device="cuda"), Engine("itti-koch", device="cpu")
    assert on_gpu.backend in ("tensorrt", "torch")
    images = [rgb, rgb[:, ::-1].copy(), np.ascontiguousarray(rgb.transpose(1, 0, 2))]
    for a, b in zip(on_gpu.predict_batch(images), on_cpu.predict_batch(images)):
        assert a.shape == b.shape and abs(float(a.prob.sum(dtype=np.float64)) - 1) < 1e-5
        assert 0.5 * np.abs(a.prob - b.prob).sum() < 0.02  # share of probability mass that moves


def test_torch_backend_refuses_an_int8_graph() -> None:
    with pytest.raises(BackendUnavailableError, match="not the int8 graph"):
        torch_cuda.TorchBackend(load_card("default").variant("int8"), device="cpu")


def test_bench_times_the_gpu_branch(monkeypatch, card, rgb, tmp_path) -> None:
    """foveal bench on a GPU backend built a host SaliencyMap from the device map and failed ("Implicit conversion
    to a NumPy array is not allowed"): the device stages are one timed call, and the box queries run on the
    DeviceSaliencyMap the Engine makes."""
    from PIL import Image

    from foveal.bench import run_bench

    image = tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(rgb[:40, :60])).save(image)
    report = run_bench(emulated_engine(monkeypatch, card, working_size=64), [image], repeats=1, batch_sizes=(1,),
                       max_seconds=60)
    assert [s.stage for s in report.stages] == ["decode", "preprocess+network+postprocess", "box queries (1000)",
                                                "predict (end to end)"]


def test_an_engine_closed_while_it_is_benchmarked_ends_the_bench_with_the_closed_error(monkeypatch, card, rgb,
                                                                                     tmp_path) -> None:
    """bench runs some stages on the engine's backend directly: an Engine closed meanwhile (here by its first
    predict) let the next stage find the backend dropped ("'_Released' object has no attribute 'stream'")."""
    from PIL import Image

    from foveal import InputError
    from foveal.bench import run_bench

    image = tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(rgb[:40, :60])).save(image)
    engine = emulated_engine(monkeypatch, card, working_size=64)
    predict = engine.predict

    def predict_then_close(source):
        smap = predict(source)
        engine.close()
        return smap

    monkeypatch.setattr(engine, "predict", predict_then_close)
    with pytest.raises(InputError, match="is closed; make a new Engine"):
        run_bench(engine, [image], repeats=1, batch_sizes=(1,), max_seconds=60)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch", "tensorrt"])
def test_closing_a_gpu_engine_frees_its_backend_and_device_memory(name, rgb) -> None:
    """Engine.close() promises (docs/GPU.md) the backend dropped at once, not at a garbage collection, and its
    buffers back in CuPy's and torch's pools, which hand them to the driver when asked."""
    import gc
    import weakref

    from foveal import Engine

    why = backends.unavailable_reason(name)
    if why is not None:
        pytest.skip(f"{name} backend unavailable here: {why}")
    import cupy
    import torch

    def free_bytes() -> int:
        cupy.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
        return int(cupy.cuda.runtime.memGetInfo()[0])

    engine = Engine("itti-koch", device=[name], strict=True)
    engine.predict(rgb)
    backend = weakref.ref(engine._backend)
    in_use = free_bytes()
    gc.disable()  # freed by the close itself, not by a collection
    try:
        engine.close()
        assert backend() is None, gc.get_referrers(backend()) if backend() is not None else None
        freed = free_bytes() - in_use
    finally:
        gc.enable()
    assert freed >= 0, f"{-freed} bytes more in use after close"
