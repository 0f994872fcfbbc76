"""The thread-safety contract (Engine docstring, docs/ARCHITECTURE.md): one Engine and one SaliencyMap shared by
threads give exactly, bit for bit, the results of the same calls made one after another, on every backend this CPU
can run (ONNX Runtime fp32 and int8, the torch backend's CPU mode)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from foveal import Engine, SaliencyMap
from foveal.models import load_card

THREADS = 6


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shapes = [(90, 120), (120, 90), (64, 64), (90, 120), (33, 200), (200, 33)]
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in shapes]


def _engine(kind: str) -> Engine:
    if kind == "onnxruntime-fp32":
        return Engine("itti-koch", device="cpu", precision="fp32")
    if kind == "onnxruntime-int8":
        return Engine("default", device="cpu", precision="int8")
    pytest.importorskip("torch", reason="PyTorch not installed")
    from foveal.backends.torch_cuda import TorchBackend

    engine = Engine("itti-koch", device="cpu", precision="fp32")
    engine._backend = TorchBackend(load_card("itti-koch"), device="cpu")  # the backend's CPU mode, for tests
    return engine


def _concurrently(calls: list) -> list:
    """Run every zero-argument call on its own thread, all released at once; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(timeout=300) for f in [pool.submit(run, call) for call in calls]]


@pytest.mark.parametrize("kind", ["onnxruntime-fp32", "onnxruntime-int8", "torch-cpu"])
def test_concurrent_predictions_equal_serial_ones(kind):
    engine, images = _engine(kind), _images()
    serial = [engine.predict(image).prob for image in images]
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(images)) for _ in range(THREADS)]

    def one_thread(order):
        def call():
            singles = [(int(i), engine.predict(images[i]).prob) for i in order[:3]]
            batch = engine.predict_batch([images[i] for i in order[3:]], batch_size=2)
            return singles + [(int(i), m.prob) for i, m in zip(order[3:], batch)]
        return call

    for results in _concurrently([one_thread(order) for order in orders]):
        for i, prob in results:
            # Batched and single runs of one image may differ in the last float bits (another batch shape);
            # the same call must not: compare singles exactly and batch members to the serial batch's.
            assert prob.shape == serial[i].shape
            np.testing.assert_allclose(prob, serial[i], rtol=1e-5, atol=1e-12)
    singles = _concurrently([lambda i=i: engine.predict(images[i % len(images)]).prob for i in range(THREADS * 2)])
    for i, prob in enumerate(singles):
        np.testing.assert_array_equal(prob, serial[i % len(images)])


def test_concurrent_batches_equal_the_serial_batch():
    engine, images = _engine("onnxruntime-fp32"), _images()
    serial = [m.prob for m in engine.predict_batch(images, batch_size=4)]
    for maps in _concurrently([lambda: engine.predict_batch(images, batch_size=4)] * THREADS):
        for got, expected in zip(maps, serial):
            np.testing.assert_array_equal(got.prob, expected)


def test_one_saliency_map_read_by_many_threads():
    """The summed-area table is built lazily on first use: threads racing to it must all see the same one."""
    rng = np.random.default_rng(3)
    prob = rng.random((300, 400)).astype(np.float32)
    prob /= prob.sum(dtype=np.float64)
    boxes = np.column_stack([rng.integers(0, 350, 200), rng.integers(0, 250, 200), rng.integers(1, 50, 200),
                             rng.integers(1, 50, 200)])
    expected = SaliencyMap(prob).box_stats(boxes)
    for _ in range(3):  # a fresh map each round, so the first access races every time
        shared = SaliencyMap(prob)
        for stats in _concurrently([lambda: shared.box_stats(boxes)] * THREADS):
            for key, values in expected.items():
                np.testing.assert_array_equal(stats[key], values)


def test_gpu_backends_run_one_call_at_a_time(monkeypatch, rgb):
    """A GPU backend's stream, TensorRT contexts and CUDA-graph buffers are shared: the Engine's lock lets one
    network call in at a time (the contract in the Engine docstring and docs/GPU.md)."""
    import time

    engine = Engine("itti-koch")
    expected = engine.predict(rgb).prob
    cpu_run = engine._run_cpu
    inside, peak = [0], [0]
    counter = threading.Lock()

    def run_gpu(decoded, plans):  # the GPU branch's place in Engine._run, run on the CPU path
        with counter:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.01)  # widen the window a race would need
        try:
            return [prob for prob, _sat in cpu_run(decoded, plans)]  # the GPU path returns maps only
        finally:
            with counter:
                inside[0] -= 1

    class OnGpu:
        name, device, on_gpu, precision = "stand-in", "cuda:0", True, engine.precision
        run = staticmethod(engine._backend.run)

    monkeypatch.setattr(engine, "_backend", OnGpu())
    monkeypatch.setattr(engine, "_run_gpu", run_gpu)
    for prob in _concurrently([lambda: engine.predict(rgb).prob] * THREADS):
        np.testing.assert_array_equal(prob, expected)
    assert peak[0] == 1


def _laned_engine() -> Engine:
    engine = Engine()
    if len(engine._cpu_lanes()) < 2:
        pytest.skip("lanes need two or more kernel threads")
    return engine


def test_ctrl_c_while_lanes_start_leaves_no_lane_working(monkeypatch):
    """A KeyboardInterrupt inside Thread.start() (which waits for the new thread) left the lane already started
    working through the whole job, calling on_result, after predict_stream had raised."""
    import time

    engine = _laned_engine()
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        real_start(thread)
        if thread.name.startswith("foveal-lane"):
            raise KeyboardInterrupt

    seen: list[int] = []
    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        engine.predict_stream([image] * 40, lambda i, m: seen.append(i))
    monkeypatch.setattr(threading.Thread, "start", real_start)
    calls = len(seen)
    time.sleep(0.5)
    assert len(seen) == calls <= 1 and not [t for t in threading.enumerate() if t.name.startswith("foveal-lane")]
    assert np.array_equal(engine.predict_batch([image])[0].prob, engine.predict(image).prob)  # the next call works


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_engine_forked_while_busy_works_in_the_child():
    """Forked while another thread made the lanes, the child inherited their lock held and its first batch waited
    for ever; forked mid-predict, its session could wait for a pool thread the child does not have."""
    import signal

    engine = _laned_engine()
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    expected = engine.predict(image).prob
    engine._lanes = None  # so the batch below makes them, under the lock
    making = threading.Thread(target=engine.predict_batch, args=([image] * 4,))
    with engine._lanes_lock:  # held at the fork, as by a thread making the lanes
        making.start()
        pid = os.fork()
        if pid == 0:  # the child: bounded by an alarm, its answer in its exit status
            signal.alarm(60)
            maps = engine.predict_batch([image] * 4)
            os._exit(0 if all(np.array_equal(m.prob, expected) for m in maps) else 3)
    making.join(timeout=60)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_closes_its_engine_ends():
    """ONNX Runtime's session, freed in a forked child, waits for its pool's threads, which only the parent has:
    a child that closed (or dropped) an Engine it inherited, even an idle one, hung."""
    import gc
    import signal

    engine = Engine()
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), np.uint8)
    expected = engine.predict(image).prob
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        same = np.array_equal(engine.predict(image).prob, expected)
        engine.close()
        gc.collect()
        os._exit(0 if same else 3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
