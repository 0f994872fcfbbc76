"""Engine and SaliencyMap end to end on the CPU backend."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest
from PIL import Image

import foveal
import foveal.geometry
import foveal.saliency_map as saliency_map
from foveal import Engine, InputError, SaliencyMap
from foveal.backends import resolve


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine("itti-koch")


def test_predict_returns_a_probability_map_of_the_image_shape(engine, rgb):
    smap = engine.predict(rgb)
    assert smap.shape == rgb.shape[:2] and smap.prob.dtype == np.float32
    assert abs(float(smap.prob.sum(dtype=np.float64)) - 1) < 1e-5 and (smap.prob >= 0).all()
    assert smap.provenance["model"] == "itti-koch" and smap.provenance["backend"] == "onnxruntime"
    assert smap.provenance["model_sha256"] == engine.model.sha256
    assert smap.provenance["foveal_version"] == foveal.__version__


def test_batch_matches_single_and_keeps_order(engine, rgb):
    tall = np.ascontiguousarray(np.rot90(rgb))
    maps = engine.predict_batch([rgb, tall, rgb[:, ::-1].copy(), rgb], batch_size=2)
    assert [m.shape for m in maps] == [(90, 120), (120, 90), (90, 120), (90, 120)]
    np.testing.assert_allclose(maps[0].prob, engine.predict(rgb).prob, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(maps[3].prob, maps[0].prob, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("hw", [(64, 256), (256, 64), (1, 1), (7, 300)])
def test_extreme_aspects(engine, hw):
    image = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    smap = engine.predict(image)
    assert smap.shape == hw and abs(smap.total - 1) < 1e-5


@pytest.mark.parametrize("hw", [(90, 728), (728, 90)])
def test_banner_maps_centre_where_the_banner_does(engine, hw):
    """A featureless banner is mostly padding on the network's input. itti-koch's map of it is its centre prior,
    laid out on the padded input; the padding is split around the image, so the map's mass centres on the
    banner's middle (with the padding after the image it sat at 51.6 of 90 rows)."""
    smap = engine.predict(np.full((*hw, 3), 128, np.uint8))
    axis = 0 if hw[0] < hw[1] else 1  # the banner's short side
    profile = smap.prob.sum(axis=1 - axis, dtype=np.float64)
    centroid = float(profile @ np.arange(hw[axis])) / float(profile.sum())
    assert abs(centroid - (hw[axis] - 1) / 2) < 0.02 * hw[axis]


@pytest.mark.parametrize("hw", [(90, 728), (250, 300), (628, 1200), (1080, 1080), (1920, 1080), (1, 5000), (33, 7)])
def test_plan_centres_the_image_on_the_input(engine, hw):
    p = foveal.geometry.plan(*hw, engine.model)
    for axis in (0, 1):
        before = p.offset_hw[axis]
        after = p.padded_hw[axis] - p.resized_hw[axis] - before
        assert 0 <= before <= after <= before + 1
        assert p.origin_hw[axis] == before / engine.model.stride


def test_box_queries_match_numpy(engine, rgb):
    smap = engine.predict(rgb)
    boxes = np.array([[0, 0, 120, 90], [10, 5, 30, 20], [100, 80, 20, 10], [0, 0, 5, 5]])
    stats = smap.box_stats(boxes)
    p = smap.prob.astype(np.float64)
    expect = [p.sum(), p[5:25, 10:40].sum(), p[80:, 100:].sum(), p[:5, :5].sum()]
    np.testing.assert_allclose(stats["sum"], expect, atol=1e-12)
    np.testing.assert_array_equal(stats["area"], [10800, 600, 200, 25])
    np.testing.assert_allclose(stats["lift"], stats["share"] / (stats["area"] / 10800))
    assert smap.share([0, 0, 120, 90]) == pytest.approx(1, abs=1e-6)
    assert smap.lift([0, 0, 120, 90]) == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize("box, match", [
    ([1, 2, float("nan"), 4], "finite"), ([0, 0, 0, 10], "zero or negative"), ([5, 5, -3, 2], "zero or negative"),
    ([500, 500, 10, 10], "outside"), ([[1, 2, 3]], "expected"),
    # Partly outside: refused like an element file's box, never clipped (a clipped box measures another region).
    ([-5, -5, 10, 10], "outside"), ([100, 80, 50, 50], "outside"),
])
def test_bad_boxes(engine, rgb, box, match):
    with pytest.raises(InputError, match=match):
        engine.predict(rgb).box_sum(box)


def test_png_round_trip(engine, rgb, tmp_path):
    smap = engine.predict(rgb)
    for bits in (8, 16):
        scale = smap.to_png(tmp_path / f"m{bits}.png", bits=bits)
        back = SaliencyMap.from_png(tmp_path / f"m{bits}.png")
        assert scale == pytest.approx(float(smap.prob.max()) / (2**bits - 1))
        tail = smap.prob < scale / 2  # stored as 1, not 0 (foveal.cpu.quantize)
        assert np.abs(back.prob - smap.prob)[~tail].max(initial=0) <= scale / 2 * 1.001
        assert (back.prob[tail] == np.float32(scale)).all()
    with Image.open(tmp_path / "m16.png") as image:
        assert image.mode.startswith("I") and image.text["foveal:model"] == "itti-koch"


def test_png_round_trip_keeps_the_provenance(engine, rgb, tmp_path):
    """from_png dropped the provenance to_png stored, so norms of another model no longer refused the map."""
    smap = engine.predict(rgb)
    smap.to_png(tmp_path / "m.png", bits=16)
    back = SaliencyMap.from_png(tmp_path / "m.png")
    assert back.provenance == {**smap.provenance, "source": str(tmp_path / "m.png")}
    assert repr(back) == f"SaliencyMap(shape={rgb.shape[:2]}, model='itti-koch', backend='onnxruntime')"


def test_png_text_keys_cannot_replace_the_scale_or_break_the_file(tmp_path):
    """A provenance key 'scale' was written over the stored scale (from_png then read the map 2040 times too
    large); a key PNG cannot hold raised a UnicodeEncodeError."""
    prob = np.full((4, 4), 1 / 16, np.float32)
    with pytest.raises(InputError, match=r"provenance key 'scale' is where to_png stores the map's scale; rename"):
        SaliencyMap(prob, {"scale": 0.5}).to_png(tmp_path / "s.png")
    with pytest.raises(InputError, match=r"PNG text key 'foveal:ключ': a PNG keyword is 1 to 79 printable Latin-1"):
        SaliencyMap(prob, {"ключ": 1}).to_png(tmp_path / "k.png")
    with pytest.raises(InputError, match="PNG text key"):
        SaliencyMap(prob, {"k" * 73: 1}).to_png(tmp_path / "k.png")
    assert not list(tmp_path.iterdir())
    SaliencyMap(prob, {"zoom": 0.5, "k" * 72: "ключ"}).to_png(tmp_path / "ok.png")  # values may be any text
    back = SaliencyMap.from_png(tmp_path / "ok.png")
    assert back.prob == pytest.approx(prob)


def test_a_masked_array_with_masked_entries_is_refused():
    hidden = np.ma.masked_array([[1.0, 1.0], [1.0, 1e6]], mask=[[0, 0], [0, 1]])
    with pytest.raises(InputError, match=r"masked entries; fill them first"):
        SaliencyMap(hidden)
    assert SaliencyMap(np.ma.masked_array([[1.0, 3.0]], mask=False)).share([0, 0, 1, 1]) == pytest.approx(0.25)


@pytest.mark.parametrize("prob, where", [(np.full((4, 4), 1e300), "beyond"), (np.full((4, 4), 1e-50), "below"),
                                         (np.array([[np.inf, 1e300], [1.0, 1.0]]), "beyond")])
def test_a_wide_map_float32_cannot_hold_is_refused_at_once(prob, where):
    """The cast warned of an overflow and the first box query said "total inf", or "total 0" for values that
    underflowed, of a finite positive map."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=f"values up to 1e[-+]?\\d+ are {where} float32's range; divide"):
            SaliencyMap(prob)
    assert SaliencyMap(np.full((4, 4), 1e30)).share([0, 0, 2, 2]) == pytest.approx(0.25)
    assert SaliencyMap(np.array([[1e-50, 1.0]])).share([1, 0, 1, 1]) == 1.0  # some values flushed: fine


def test_share_and_lift_take_an_array_box_in_their_hints_too():
    """share and lift were hinted Sequence[float], so mypy refused smap.share(np.array([x, y, w, h])), which runs."""
    import inspect

    hint = inspect.signature(SaliencyMap.box_stats).parameters["boxes"].annotation
    for method in (SaliencyMap.share, SaliencyMap.lift):
        assert inspect.signature(method).parameters["box"].annotation == hint
    assert SaliencyMap(np.full((2, 2), 0.25)).share(np.array([0, 0, 1, 2])) == pytest.approx(0.5)


def test_strictly_typed_user_code_gets_maps_from_predict_batch_without_casts(tmp_path):
    """predict_batch was hinted list[Any], so under mypy --strict ``return engine.predict_batch(paths)[0].share(box)``
    in a function returning float was "Returning Any"; errors="raise" gives maps, "return" maps or errors."""
    pytest.importorskip("mypy", reason="mypy not installed")
    import site

    script = tmp_path / "user.py"
    script.write_text("""from __future__ import annotations
from pathlib import Path
import foveal
from foveal.scoring import Element, score_creative
from foveal.serve.batcher import Predictor

def first_share(engine: foveal.Engine | foveal.Client, paths: list[str]) -> float:
    return engine.predict_batch(paths)[0].share([0, 0, 4, 4])

def failures(engine: foveal.Engine | foveal.Client, paths: list[str]) -> list[foveal.FovealError]:
    return [r for r in engine.predict_batch(paths, errors="return") if isinstance(r, foveal.FovealError)]

def serve(engine: Predictor) -> None: ...

serve(foveal.Engine())

def scored(smap: foveal.DeviceSaliencyMap, elements: list[Element]) -> float:
    return score_creative(smap, elements).focus  # MapLike's prob was settable: a device map's is read-only

engine = foveal.Engine(Path("models/mine"))
""")
    env = {**os.environ, "MYPYPATH": os.path.dirname(os.path.dirname(foveal.__file__))}
    if any(os.path.samefile(env["MYPYPATH"], p) for p in site.getsitepackages() if os.path.isdir(p)):
        del env["MYPYPATH"]  # an installed foveal: mypy finds it (py.typed) and refuses site-packages there
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                          str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # ImageLike named PIL.Image.Image without importing PIL, so it fell back to Any and anything type-checked.
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import foveal\nfoveal.Engine().predict(42)\nfoveal.load_image({'a': 1})\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                          str(wrong)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1 and run.stdout.count("[arg-type]") == 2, run.stdout + run.stderr


def test_overlay(engine, rgb, tmp_path):
    smap = engine.predict(rgb)
    out = smap.overlay(rgb, tmp_path / "o.png")
    assert out.shape == rgb.shape and out.dtype == np.uint8 and (tmp_path / "o.png").is_file()
    with pytest.raises(InputError, match="must match"):
        smap.overlay(rgb[:10])


@pytest.mark.parametrize("prob, image, alpha, match", [
    (np.full((4, 4), 1 / 16), np.zeros((4, 4, 3), np.float32), 0.5, "uint8"),
    (np.full((4, 4), 1 / 16), np.zeros((4, 4, 3), np.uint8), "0.5", "alpha must be a number"),
    (np.full((4, 4), np.nan), np.zeros((4, 4, 3), np.uint8), 0.5, "not a probability map"),
    (np.full((4, 4), -1.0), np.zeros((4, 4, 3), np.uint8), 0.5, "not a probability map"),
    # A grey image of the map's size was told "image is (4, 4), map is (4, 4); they must match"; a path "image is ()".
    (np.full((4, 4), 1 / 16), np.zeros((4, 4), np.uint8), 0.5, r"must be \(H, W, 3\) RGB, got shape \(4, 4\); "
     r"foveal.load_image\(image\) gives RGB"),
    (np.full((4, 4), 1 / 16), "creative.png", 0.5, r"got a str; read the file first: overlay\(foveal.load_image"),
])
def test_overlay_checks_its_inputs(prob, image, alpha, match):
    with pytest.raises(InputError, match=match):
        SaliencyMap(prob.astype(np.float32)).overlay(image, alpha=alpha)


def test_overlay_in_row_blocks_equals_one_block(monkeypatch):
    """The blend runs a block of rows at a time (bounded memory); the colours keep the whole map's scale."""
    rng = np.random.default_rng(3)
    prob = rng.random((101, 77), dtype=np.float32) ** 8  # the peak sits in one block only
    image = rng.integers(0, 256, (101, 77, 3), dtype=np.uint8)
    smap = SaliencyMap(prob / prob.sum())
    whole = smap.overlay(image)
    monkeypatch.setattr(saliency_map, "OVERLAY_BLOCK_PIXELS", 77 * 7)
    np.testing.assert_array_equal(smap.overlay(image), whole)


def test_overlay_is_its_documented_blend_exactly():
    """The blend runs in reused planar buffers for speed; it must stay the documented formula, pixel for pixel."""
    from foveal import cpu
    from foveal.saliency_map import OVERLAY_BASE, overlay_ramp

    rng = np.random.default_rng(8)
    for h, w in ((1, 1), (3, 700), (450, 2), (257, 333)):
        prob = rng.random((h, w), dtype=np.float32) ** 6
        prob /= prob.sum()
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for alpha in (0.0, 0.35, 0.9, 1.0):
            t = prob / prob.max()
            colours = cpu.colorize(overlay_ramp(t), "inferno").astype(np.float32)
            grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            low, high = OVERLAY_BASE
            base = (low + grey * ((high - low) / 255.0))[..., None]
            want = np.clip(base + (colours - base) * (alpha * np.sqrt(t))[..., None] + 0.5, 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(SaliencyMap(prob).overlay(image, alpha=alpha), want)


@pytest.mark.parametrize("colour", [(0, 0, 0), (200, 20, 20), (255, 255, 255), (40, 40, 160)])
def test_overlay_heat_stands_out_on_any_background(colour):
    # Turbo at alpha 0.6 all but vanished on dark and on red areas; the peak must stand out from the unattended image.
    image = np.empty((40, 60, 3), np.uint8)
    image[:] = colour
    prob = np.full((40, 60), 1e-6, np.float32)
    prob[15:25, 25:35] = 1.0
    prob[5:8, 5:8] = 0.1  # faint attention shows too
    out = SaliencyMap(prob / prob.sum()).overlay(image).astype(int)
    background = out[35, 55]
    assert np.abs(out[20, 30] - background).sum() >= 150, (out[20, 30], background)
    assert np.abs(out[6, 6] - background).sum() >= 20, (out[6, 6], background)


def test_device_resolution_and_errors(rgb):
    assert resolve("auto") == ("tensorrt", "torch", "onnxruntime")
    assert resolve(["onnxruntime", "cpu"]) == ("onnxruntime",)
    with pytest.raises(InputError, match="unknown device"):
        Engine("itti-koch", device="tpu")
    if not {"tensorrt", "torch"} & set(foveal.available_backends()):  # a machine without a GPU backend
        with pytest.raises(foveal.BackendUnavailableError, match="no backend"):
            Engine("itti-koch", device="cuda")
    assert Engine("itti-koch", device="auto").backend in foveal.available_backends()


def test_precision_choice(rgb):
    auto, fp32 = Engine(), Engine(precision="fp32")
    assert auto.precision == "int8" and fp32.precision == "fp32"  # on ONNX Runtime the int8 graph is the default
    assert "precision='int8'" in repr(auto)
    a, b = auto.predict(rgb), fp32.predict(rgb)
    assert a.provenance["precision"] == "int8" and b.provenance["precision"] == "fp32"
    # Variants are one model: the same identity, so norms built with one apply to the other.
    assert a.provenance["model_sha256"] == b.provenance["model_sha256"] == auto.model.sha256
    assert a.prob.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.corrcoef(a.prob.ravel(), b.prob.ravel())[0, 1] > 0.98
    assert Engine(precision="int8").precision == "int8"
    fp16 = Engine(precision="fp16")  # ONNX Runtime runs the fp16 graph too (slowly on this CPU; it is TensorRT's)
    assert fp16.precision == "fp16"
    assert np.corrcoef(fp16.predict(rgb).prob.ravel(), b.prob.ravel())[0, 1] > 0.9999
    assert Engine("itti-koch").precision == "fp32"  # nothing to quantise: auto keeps the float graph
    with pytest.raises(foveal.ModelError, match="ships no int8 graph"):
        Engine("itti-koch", precision="int8")
    with pytest.raises(InputError, match="precision must be one of"):
        Engine(precision="fp8")


def test_which_backend_gets_which_graph():
    from foveal.engine import _graphs

    card = foveal.load_card("default")
    precision_of = lambda graphs: {name: g.precision for name, g in graphs.items()}  # noqa: E731
    assert precision_of(_graphs(card, "auto")) == {"onnxruntime": "int8", "tensorrt": "fp16"}  # torch: own fp16
    assert precision_of(_graphs(card, "fp16")) == {"onnxruntime": "fp16", "tensorrt": "fp16"}
    assert precision_of(_graphs(card, "int8")) == dict.fromkeys(("onnxruntime", "tensorrt", "torch"), "int8")
    assert _graphs(card, "fp32") == {} and _graphs(foveal.load_card("itti-koch"), "auto") == {}


def test_saliency_map_validation():
    with pytest.raises(InputError):
        SaliencyMap(np.zeros((3,), np.float32))
    with pytest.raises(InputError):
        SaliencyMap(np.zeros((2, 2), np.int32))


def test_onnxruntime_threads_sleep_between_runs():
    from foveal.backends.onnxruntime import OnnxRuntimeBackend

    # Spinning pool threads would steal the cores that preprocessing and postprocessing use next.
    options = OnnxRuntimeBackend(foveal.load_card("itti-koch"), threads=2)._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_onnxruntime_threads_default_to_the_kernels_count():
    """ORT's own default counts the machine's cores, not FOVEAL_NUM_THREADS or a container's CPU quota."""
    from foveal import cpu
    from foveal.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(foveal.load_card("itti-koch"))
    assert backend._session.get_session_options().intra_op_num_threads == backend.threads == cpu.thread_count()


CLOSED = r"^this Engine \(model 'itti-koch'\) is closed; make a new Engine to predict$"


def test_a_closed_engine_has_freed_its_sessions_and_refuses_every_call(rgb):
    """``with Engine() as engine:`` frees the session and the lanes' twins on leaving, by reference count (not at
    a garbage collection, which a notebook may not run for long); later calls are one clear error."""
    gc.disable()  # what close frees must go now, without a collection
    try:
        with Engine("itti-koch", threads=2) as engine:
            engine.predict_batch([rgb, rgb])  # makes the lanes' twins, where there are two usable CPUs
            held = [weakref.ref(backend) for backend in [engine._backend, *engine._lanes]]
        assert [ref() for ref in held] == [None] * len(held)
    finally:
        gc.enable()
    assert repr(engine) == ("Engine(model='itti-koch', backend='onnxruntime', device='cpu', precision='fp32', "
                            "closed)")
    for call in (lambda: engine.predict(rgb), lambda: engine.predict_batch([rgb, rgb]),
                 lambda: engine.predict_stream([rgb], lambda i, m: None), lambda: engine.lanes):
        with pytest.raises(InputError, match=CLOSED):
            call()
    engine.close()  # again: nothing to do
    assert engine.backend == "onnxruntime" and engine.precision == "fp32"


def test_a_call_running_when_the_engine_is_closed_finishes_then_frees_it(rgb):
    """close() returns at once; a stream that is still running (here waiting for its next image) finishes with
    every map, and its end frees the session; a call made after close is refused meanwhile."""
    engine = Engine("itti-koch", threads=2)
    released = weakref.ref(engine._backend)
    first, more = threading.Event(), threading.Event()
    results: dict[int, object] = {}
    failures: list[BaseException] = []

    def source():
        yield rgb
        assert more.wait(60)
        yield rgb[::-1].copy()

    def on_result(i, smap):
        results[i] = smap
        first.set()

    def stream():
        try:
            engine.predict_stream(source(), on_result)
        except BaseException as exc:  # noqa: BLE001 - looked at on the test's thread
            failures.append(exc)

    worker = threading.Thread(target=stream)
    worker.start()
    try:
        assert first.wait(60)
        engine.close()
        with pytest.raises(InputError, match=CLOSED):
            engine.predict(rgb)
        assert released() is not None  # the stream still runs on it
    finally:
        more.set()
        worker.join(60)
    assert not worker.is_alive() and failures == []
    assert sorted(results) == [0, 1] and all(isinstance(m, SaliencyMap) for m in results.values())
    assert released() is None


def test_closing_an_engine_other_threads_predict_on_costs_each_call_its_map_or_the_closed_error(rgb):
    """Threads predicting while another closes the engine: every call returns its map or raises the closed error,
    never anything else (a session freed under a running call would crash the process)."""
    engine = Engine("itti-koch", threads=2)
    outcomes: list[object] = []
    started = threading.Barrier(4)

    def predict(batch: bool) -> None:
        started.wait(30)
        for _ in range(50):
            try:
                outcomes.append(engine.predict_batch([rgb, rgb]) if batch else engine.predict(rgb))
            except Exception as exc:  # noqa: BLE001 - checked below
                outcomes.append(exc)
                if isinstance(exc, InputError) and "closed" in str(exc):
                    return

    threads = [threading.Thread(target=predict, args=(k % 2 == 0,)) for k in range(3)]
    for thread in threads:
        thread.start()
    started.wait(30)
    engine.predict(rgb)
    engine.close()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 3 and all(isinstance(e, InputError) and e.args[0].endswith("make a new Engine to predict")
                                    for e in errors), errors


def test_cpu_batches_run_one_image_per_core_and_equal_predict_bit_for_bit(rgb, tmp_path):
    """predict_batch's single-threaded lanes give the maps predict's multi-threaded session gives, in order, with
    a bad image failing alone; the shipped int8 and fp32 graphs both."""
    from foveal import cpu

    if cpu.thread_count() < 2:
        pytest.skip("one usable CPU: predict_batch has a single lane, the predict path itself")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    tall = np.ascontiguousarray(np.rot90(rgb))
    images = [rgb, tall, rgb[:, ::-1].copy(), np.full((300, 40, 3), 200, np.uint8), rgb[::2, ::3].copy()]
    for precision in ("int8", "fp32"):
        engine = Engine(precision=precision)
        assert len(engine._cpu_lanes()) == cpu.thread_count()
        maps = engine.predict_batch(images + [str(bad)] + images, errors="return")
        assert isinstance(maps[len(images)], foveal.ImageError)
        for image, smap in zip(images + [None] + images, maps):
            if image is not None:
                single = engine.predict(image)
                assert np.array_equal(smap.prob, single.prob) and np.array_equal(smap.sat, single.sat)
        with pytest.raises(foveal.ImageError, match=r"^images\[5\]"):
            engine.predict_batch(images + [str(bad)] + images)


def test_no_more_lanes_than_the_cpus_the_process_may_use():
    """A thread count above the usable CPUs (FOVEAL_NUM_THREADS=999 on 2 CPUs) made a session per thread: 999 of
    them, about 6 GB and 35 s, for no more images a second."""
    from foveal import cpu

    usable = cpu.usable_cpus()
    assert usable >= 1
    lanes = Engine(threads=usable + 3)._cpu_lanes()
    assert len(lanes) == (usable if usable > 1 else 0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_usable_cpus_follow_the_affinity_mask():
    """Read anew on each call, from the affinity mask (and cgroup quota), whatever FOVEAL_NUM_THREADS says."""
    code = ("import os; from foveal import cpu; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "print(cpu.usable_cpus(), cpu.thread_count())")
    env = {**os.environ, "FOVEAL_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "3"]


def test_one_thread_batches_run_image_by_image_and_equal_predict_bit_for_bit(rgb):
    """With one thread there are no lanes; images of one size still run one network call each (a batch of them
    is slower on a CPU), so the maps are predict's exactly."""
    engine = Engine(threads=1)
    assert engine._cpu_lanes() == []
    images = [rgb, rgb[:, ::-1].copy(), rgb, np.ascontiguousarray(np.rot90(rgb))]
    calls = []
    run = engine._backend.run
    engine._backend.run = lambda batch: calls.append(batch.shape[0]) or run(batch)
    maps = engine.predict_batch(images, batch_size=16)
    assert calls == [1, 1, 1, 1]
    for image, smap in zip(images, maps):
        single = engine.predict(image)
        assert np.array_equal(smap.prob, single.prob) and np.array_equal(smap.sat, single.sat)


@pytest.mark.parametrize("images", ["a.png", b"\x89PNG", np.zeros((20, 30, 3), np.uint8), Image.new("RGB", (4, 4))])
def test_predict_batch_refuses_a_single_image(engine, images):
    """A string (or bytes, or one array) is iterable; predicting its characters or rows was a silent wrong answer."""
    with pytest.raises(InputError, match="predict"):
        engine.predict_batch(images)


def test_predict_batch_takes_a_stack_of_images(engine, rgb):
    maps = engine.predict_batch(np.stack([rgb, rgb]))
    assert len(maps) == 2 and maps[0].shape == rgb.shape[:2]


def test_predict_batch_takes_a_column_of_images_and_refuses_a_table(engine, rgb, tmp_path):
    """A 1-D array of paths (a DataFrame column's to_numpy()) was refused as "must be N×H×W×C (4-D) ... for one
    image use predict()"; a DataFrame itself was read as its column names, "image file not found: path"."""
    pd = pytest.importorskip("pandas")
    Image.fromarray(rgb).save(tmp_path / "a.png")
    table = pd.DataFrame({"path": [str(tmp_path / "a.png")] * 2})
    single = engine.predict(tmp_path / "a.png").prob
    for column in (np.array(table["path"].tolist()), table["path"].to_numpy(dtype=object)):
        maps = engine.predict_batch(column)
        assert len(maps) == 2 and all(np.array_equal(m.prob, single) for m in maps)
    with pytest.raises(InputError, match=r"got a DataFrame; pass its column of images, e.g. df\["):
        engine.predict_batch(table)


def test_one_bad_image_costs_no_other_image_its_map(engine, rgb, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    tall = np.ascontiguousarray(np.rot90(rgb))
    images = [rgb, tmp_path / "bad.png", tall, "missing.png", rgb]
    results = engine.predict_batch(images, batch_size=2, errors="return")
    assert [type(r).__name__ for r in results] == ["SaliencyMap", "ImageError", "SaliencyMap", "ImageError",
                                                   "SaliencyMap"]
    assert "bad.png" in str(results[1]) and "missing.png" in str(results[3])
    np.testing.assert_array_equal(results[2].prob, engine.predict(tall).prob)
    with pytest.raises(foveal.ImageError, match=r"images\[1\]: .*bad.png"):
        engine.predict_batch(images)
    with pytest.raises(foveal.ImageError, match="bad.png") as info:
        engine.predict(tmp_path / "bad.png")
    assert "images[" not in str(info.value)
    assert engine.predict_batch([], errors="return") == []


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": "2"}, "batch_size"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"errors": "ignore"}, "errors"),
])
def test_predict_batch_arguments(engine, rgb, kwargs, match):
    with pytest.raises(InputError, match=match):
        engine.predict_batch([rgb], **kwargs)


@pytest.mark.parametrize("max_pixels", [0, -5, float("nan"), float("inf"), "many", None])
def test_engine_max_pixels_is_checked(max_pixels):
    with pytest.raises(InputError, match="max_pixels"):
        Engine("itti-koch", max_pixels=max_pixels)


def test_onnxruntime_telemetry_is_off_unless_the_user_turns_it_on(tmp_path):
    """onnxruntime 1.32's wheels collect telemetry for upload to Microsoft, writing a device id and an event cache
    under ~/.cache/Microsoft and a session file in $TMPDIR on every run of foveal."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    code = ("import os, numpy as np, foveal; foveal.Engine().predict(np.zeros((64, 64, 3), np.uint8)); "
            "print(os.environ.get('ORT_DISABLE_TELEMETRY'))")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "HOME": str(home), "TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1"]
    assert [p for p in (*home.rglob("*"), *tmp.rglob("*")) if p.is_file()] == []
    chosen = subprocess.run([sys.executable, "-c", "import os, foveal; print(os.environ['ORT_DISABLE_TELEMETRY'])"],
                            capture_output=True, text=True, timeout=120, env={**env, "ORT_DISABLE_TELEMETRY": "0"})
    assert chosen.stdout.split() == ["0"]  # the user's own setting stands


def test_a_map_holds_its_own_arrays_read_only_for_good():
    """Through the read-only view of a copy it made, `m.prob.flags.writeable = True` made the map writeable again,
    and a share then read a table out of step with it."""
    smap = SaliencyMap(np.full((10, 10), 0.01, np.float64))  # float64: the map keeps a float32 copy
    smap.share([0, 0, 5, 5])
    for array in (smap.prob, smap.sat):
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
            array.flags.writeable = True
    own = np.full((10, 10), 0.01, np.float32)
    SaliencyMap(own)
    own[0, 0] = 0.02  # the caller's own array stays theirs


def test_an_image_array_with_masked_pixels_is_refused():
    # asarray read the hidden pixels: the map was of what the mask hid.
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    masked = np.ma.masked_array(image, mask=np.zeros_like(image, bool))
    engine = Engine("itti-koch")
    assert np.array_equal(engine.predict(masked).prob, engine.predict(image).prob)
    masked.mask[:10] = True
    for call in (engine.predict, foveal.load_image):
        with pytest.raises(foveal.ImageError, match="masked pixels; fill them first"):
            call(masked)


def test_a_dict_of_images_is_refused_with_what_to_pass():
    # Its keys were taken for paths: "image file not found: a".
    with pytest.raises(InputError, match=r"got a dict; pass its images, e.g. list\(d.values\(\)\)"):
        Engine("itti-koch").predict_batch({"a": np.zeros((5, 5, 3), np.uint8)})
