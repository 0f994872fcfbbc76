"""A user's model that breaks the contract is a ModelError naming the model, never a plausible wrong map or an
InputError blaming the image; malformed cards and out-of-range blur are refused up front."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from foveal import Engine, InputError, ModelError, SaliencyMap, cpu
from foveal.models import load_card

onnx = pytest.importorskip("onnx", reason="building test models needs the onnx package")
from onnx import TensorProto, helper  # noqa: E402


def _model(path, nodes, out_type=TensorProto.FLOAT, initializers=()) -> str:
    """Save an ONNX graph ``image`` (N×3×H×W float) → ``log_density`` built from ``nodes``."""
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("log_density", out_type, None)], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def _pooled(path, stride: int, tail=(), out_type=TensorProto.FLOAT, initializers=()) -> str:
    """Mean of the channels, average-pooled by ``stride``: a well-formed log-density at that stride, then ``tail``."""
    nodes = [helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[stride, stride],
                              strides=[stride, stride]),
             helper.make_node("ReduceMean", ["pooled"], ["mean" if tail else "log_density"], keepdims=1, axes=[1])]
    return _model(path, nodes + list(tail), out_type, initializers)


def _const(name: str, value) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (100, 140, 3), dtype=np.uint8)


def test_a_well_formed_bare_onnx_runs(tmp_path, image):
    smap = Engine(_pooled(tmp_path / "fine.onnx", 8)).predict(image)
    assert smap.shape == (100, 140) and abs(smap.total - 1) < 1e-5


def test_bare_onnx_with_another_stride_is_refused(tmp_path, image):
    """Assumed stride 8, real stride 16: the map would be stretched over a quarter of the image."""
    engine = Engine(_pooled(tmp_path / "coarse.onnx", 16))
    with pytest.raises(ModelError, match=r"model 'coarse'.*stride 8.*bare ONNX"):
        engine.predict(image)


def test_card_stride_that_disagrees_with_the_graph_is_refused(tmp_path, image):
    path = _pooled(tmp_path / "mine.onnx", 16)
    card = {**load_card(path).raw, "output": {"name": "log_density", "stride": 8}}
    (tmp_path / "mine.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"model 'mine'.*stride 8 from its card mine.json"):
        Engine(path).predict(image)
    card["output"]["stride"] = 16
    (tmp_path / "mine.json").write_text(json.dumps(card))
    assert Engine(path).predict(image).shape == (100, 140)


@pytest.mark.parametrize("case, match", [
    ("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("int", "int32 values"), ("one_cell", "output shape"),
    ("empty", "output shape"),
])
def test_broken_outputs_are_model_errors_naming_the_model(tmp_path, image, case, match):
    if case in ("nan", "inf"):
        value = float("nan") if case == "nan" else float("inf")
        path = _pooled(tmp_path / "broken.onnx", 8, [helper.make_node("Mul", ["mean", "c"], ["log_density"])],
                       initializers=[_const("c", value)])
    elif case == "int":
        path = _pooled(tmp_path / "broken.onnx", 8, [helper.make_node("Cast", ["mean"], ["log_density"],
                                                                      to=TensorProto.INT32)], TensorProto.INT32)
    elif case == "one_cell":
        path = _model(tmp_path / "broken.onnx", [
            helper.make_node("GlobalAveragePool", ["image"], ["g"]),
            helper.make_node("ReduceMean", ["g"], ["log_density"], keepdims=1, axes=[1])])
    else:
        starts, ends, axes = (helper.make_tensor(n, TensorProto.INT64, [1], [v])
                              for n, v in (("s", 0), ("e", 0), ("a", 3)))
        path = _pooled(tmp_path / "broken.onnx", 8, [helper.make_node("Slice", ["mean", "s", "e", "a"],
                                                                      ["log_density"])],
                       initializers=[starts, ends, axes])
    engine = Engine(path)
    with pytest.raises(ModelError, match=match) as info:
        engine.predict(image)
    assert "'broken'" in str(info.value) and not isinstance(info.value, InputError)
    results = engine.predict_batch([image, image[:50]], errors="return")
    assert all(isinstance(r, ModelError) for r in results)


@pytest.mark.parametrize("card_change, match", [
    ({"postprocess": []}, "postprocess"), ({"input": "rgb"}, "input"), ({"output": {"stride": 8.5}}, "output.stride must be a whole number"),
    ({"output": {"stride": 0}}, "between 1"), ({"postprocess": {"blur_sigma": 1e12}}, "blur_sigma"),
    ({"postprocess": {"blur_sigma": "wide"}}, "blur_sigma must be a number"), ({"onnx": 5}, "file name"),
    ({"input": {"working_size": 384, "pad_multiple": 32, "mean": [0, 0, "x"], "std": [1, 1, 1]}},
     "input.mean must be a number"),
    ({"input": {"working_size": 65536, "pad_multiple": 32, "mean": [0] * 3, "std": [255] * 3}}, "over 8192 pixels"),
])
def test_malformed_cards_are_model_errors(tmp_path, card_change, match):
    path = _pooled(tmp_path / "mine.onnx", 8)
    card = {**load_card(path).raw, **card_change}
    (tmp_path / "mine.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=match):
        load_card(tmp_path / "mine.json")


_INPUT = {"working_size": 384, "pad_multiple": 32, "mean": [0, 0, 0], "std": [255, 255, 255]}


@pytest.mark.parametrize("card_change, match", [
    ({"input": {**_INPUT, "std": "255"}}, 'input.std must be a list of 3 numbers, got "255"'),
    ({"input": {**_INPUT, "mean": ["0", "0", "0"]}}, 'input.mean must be a number, got "0"'),
    ({"input": {**_INPUT, "mean": [True, False, True]}}, "input.mean must be a number, got true"),
    ({"input": {**_INPUT, "std": [255, 255, 255, 255]}}, "input.std must be a list of 3 numbers"),
    ({"input": {**_INPUT, "std": [255, 255, 1e400]}}, "input.std must be finite"),
    ({"postprocess": {"blur_sigma": "2"}}, 'postprocess.blur_sigma must be a number, got "2"'),
    ({"postprocess": {"blur_sigma": True}}, "postprocess.blur_sigma must be a number, got true"),
    ({"name": None}, "name must be non-empty text, got null"), ({"name": ""}, "name must be non-empty text"),
    ({"version": 2}, "version must be non-empty text, got 2"),
    ({"input": {**_INPUT, "name": ["image"]}}, "input.name must be non-empty text"),
    ({"output": {"stride": 8, "name": 0}}, "output.name must be non-empty text"),
    ({"input": {**_INPUT, "color": "BGR"}}, 'input.color must be "RGB", the only one foveal feeds, got "BGR"'),
    ({"input": {**_INPUT, "layout": "NHWC"}}, 'input.layout must be "NCHW"'),
    ({"input": {**_INPUT, "dtype": "float16"}}, 'input.dtype must be "float32"'),
    ({"input": {**_INPUT, "pad_mode": "zero"}}, 'input.pad_mode must be "edge"'),
])
def test_card_fields_of_the_wrong_type_or_an_unsupported_value_are_refused(tmp_path, card_change, match):
    """float() and tuple() converted them: "255" became std (2, 5, 5), true a mean of 1, null the name 'None', and
    BGR, NHWC, float16 or zero padding were ignored while the network was fed RGB, NCHW, float32 and edge padding."""
    path = _pooled(tmp_path / "mine.onnx", 8)
    (tmp_path / "mine.json").write_text(json.dumps({**load_card(path).raw, **card_change}))
    with pytest.raises(ModelError, match=rf"^model card for mine.onnx is malformed \(\w+Error: {re.escape(match)}"):
        load_card(tmp_path / "mine.json")


def test_card_fields_foveal_feeds_may_be_stated_or_left_out(tmp_path):
    path = _pooled(tmp_path / "mine.onnx", 8)
    fed = {"layout": "NCHW", "dtype": "float32", "color": "RGB", "pad_mode": "edge"}
    for spec in ({**_INPUT, **fed}, _INPUT):
        (tmp_path / "mine.json").write_text(json.dumps({"input": spec, "output": {"stride": 8}}))
        assert load_card(path).input.std == (255.0, 255.0, 255.0)


@pytest.mark.parametrize("pooled", [True, False])
def test_a_card_that_makes_every_output_grid_one_cell_is_refused(tmp_path, image, pooled):
    """working_size = pad_multiple = stride: every image came out 1×1, a uniform map, with no error."""
    if pooled:
        path = _pooled(tmp_path / "one.onnx", 32)
    else:
        path = _model(tmp_path / "one.onnx", [helper.make_node("GlobalAveragePool", ["image"], ["g"]),
                                              helper.make_node("ReduceMean", ["g"], ["log_density"], axes=[1])])
    card = {"input": {"working_size": 32, "pad_multiple": 32, "mean": [0] * 3, "std": [255] * 3},
            "output": {"stride": 32}}
    (tmp_path / "one.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"^model card for one.onnx: .* all 32, so every image gets a 1x1 output "
                                         r"grid \(a uniform map\); raise working_size"):
        Engine(path).predict(image)
    card["input"]["working_size"] = 64  # two cells along the long side: a map, if a coarse one
    (tmp_path / "one.json").write_text(json.dumps(card))
    if pooled:
        assert Engine(path).predict(image).shape == (100, 140)
    else:  # one cell where the card means two: the output grid's shape gives it away
        with pytest.raises(ModelError, match="output shape"):
            Engine(path).predict(image)


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf"), 1e12, 1e19, "3", None])
def test_blur_sigma_is_bounded_everywhere(sigma):
    grid = np.zeros((4, 4), np.float32)
    with pytest.raises(InputError, match="blur_sigma"):
        cpu.postprocess(grid, (8, 8), (4.0, 4.0), sigma)
    if sigma is not None:  # None means "the card's" to the Engine
        with pytest.raises(InputError, match="blur_sigma"):
            Engine("itti-koch", blur_sigma=sigma)


def test_widest_blur_flattens_the_map():
    grid = np.zeros((4, 4), np.float32)
    grid[0, 0] = 10.0
    prob = cpu.postprocess(grid, (30, 30), (4.0, 4.0), cpu.MAX_BLUR_SIGMA)
    assert abs(prob.sum(dtype=np.float64) - 1) < 1e-5 and prob.max() / prob.min() < 1.01


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"tEXt", b"foveal:scale\x000.1") + chunk(b"IEND", b""))


def test_from_png_refuses_a_bomb_and_odd_files(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    with pytest.raises(InputError, match="over the limit of"):
        SaliencyMap.from_png(tmp_path / "bomb.png")
    (tmp_path / "small.png").write_bytes(_png_header_only(40, 40))  # under the limit, but holds no pixels
    with pytest.raises(InputError, match="not a foveal saliency PNG"):
        SaliencyMap.from_png(tmp_path / "small.png")
    with pytest.raises(InputError, match="not a regular file"):
        SaliencyMap.from_png("/dev/zero")


def test_finite_log_densities_far_apart_give_a_map_not_nan(tmp_path):
    """About ±3e38 on either side of an edge overflowed the interpolation into a NaN map (reported first as the
    caller's InputError, then as a ModelError): the log-densities are finite, so the map is all on the high side."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 8, 8], [2 / 192] * 192)
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [-1.0])
    path = _model(tmp_path / "extreme.onnx", [
        helper.make_node("Conv", ["image", "w", "b"], ["y"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Tanh", ["y"], ["t"]), helper.make_node("Mul", ["t", "g"], ["u"]),
        helper.make_node("Mul", ["u", "k"], ["log_density"])],
        initializers=[weights, bias, _const("g", 1.3130352855), _const("k", 3e38)])
    halves = np.zeros((256, 256, 3), np.uint8)
    halves[:, 128:] = 255
    engine = Engine(path)
    for smap in (engine.predict(halves), *engine.predict_batch([halves, halves])):
        assert np.isfinite(smap.prob).all() and abs(smap.total - 1) < 1e-5
        assert smap.share([128, 0, 128, 256]) == pytest.approx(1.0, abs=1e-6)
    for blur in (0.0, 3.0):
        prob = cpu.postprocess(np.array([[3e38, -3e38]], np.float32), (1, 4), (1.0, 2.0), blur)
        assert np.isfinite(prob).all() and prob.sum() == pytest.approx(1.0) and prob[0, 0] > 0.5


@pytest.mark.parametrize("elem_type, shape, extra, match", [
    (TensorProto.DOUBLE, ["N", 3, "H", "W"], False, r"is tensor\(double\), not float32"),
    (TensorProto.FLOAT, ["N", 3, "H"], False, r"not N×3×H×W"),
    (TensorProto.FLOAT, ["N", "H", "W", 3], False, r"channels last"),
    (TensorProto.FLOAT, ["N", 1, "H", "W"], False, r"has 1 channels, not 3"),
    (TensorProto.FLOAT, ["N", 3, 384, 384], False, r"H, W fixed; N, H and W must be dynamic"),
    (TensorProto.FLOAT, [1, 3, "H", "W"], False, r"N fixed"),
    (TensorProto.FLOAT, ["N", 3, "H", "W"], True, r"is one of 2 inputs the graph needs"),
])
def test_a_graph_input_that_breaks_the_contract_is_refused_at_load(tmp_path, elem_type, shape, extra, match):
    """Such models loaded, then failed image by image with ONNX Runtime's own message (or ran only at one size)."""
    inputs = [helper.make_tensor_value_info("image", elem_type, shape)]
    if extra:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["log_density"])], "m", inputs,
                              [helper.make_tensor_value_info("log_density", elem_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "odd.onnx")
    with pytest.raises(ModelError, match=rf"odd.onnx: its input 'image' .*{match}.*docs/MODEL_CONTRACT.md"):
        Engine(str(tmp_path / "odd.onnx"))


def test_a_graph_input_declared_without_a_shape_is_any_size(tmp_path, image):
    """ONNX lets an input leave its shape undeclared; ONNX Runtime reports [] for it, and such a model runs."""
    nodes = [helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("ReduceMean", ["pooled"], ["log_density"], keepdims=1, axes=[1])]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("log_density", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "shapeless.onnx")
    smap = Engine(str(tmp_path / "shapeless.onnx")).predict(image)
    assert smap.shape == (100, 140) and abs(smap.total - 1) < 1e-5


def test_a_graph_failing_at_run_time_prints_nothing_of_its_own(tmp_path, image, capfd):
    """ONNX Runtime logged the failed run in colour on stderr before foveal raised its one-line ModelError."""
    path = _model(tmp_path / "square.onnx", [helper.make_node("Transpose", ["image"], ["t"], perm=[0, 1, 3, 2]),
                                              helper.make_node("Add", ["image", "t"], ["log_density"])])
    with pytest.raises(ModelError, match=r"^model 'square' failed in onnxruntime on a \d+x\d+ input \([^\n]*\); the "
                                         r"contract has a graph take any height and width that are multiples of its "
                                         r"card's pad_multiple \(\d+\)"):
        Engine(path).predict(image)  # 100×140: not square
    assert capfd.readouterr().err == ""


def test_a_graph_swapped_after_its_engine_loaded_it_is_refused_not_run(tmp_path, image):
    """Sessions made after loading (a first batch's lanes, a forked child's) read the file again: a graph swapped
    meanwhile ran under the old sha256 in every map's provenance."""
    import shutil

    path = _pooled(tmp_path / "m.onnx", 8)
    engine = Engine(path, threads=2)
    engine.predict(image)
    swapped = _pooled(tmp_path / "other.onnx", 8, tail=[helper.make_node("Neg", ["mean"], ["log_density"])])
    from foveal import cpu

    if cpu.usable_cpus() < 2:
        pytest.skip("no lanes with one CPU: no session is made after loading")
    shutil.copy(swapped, path)
    with pytest.raises(ModelError, match=r"m.onnx: changed since it was loaded \(sha256 now [0-9a-f]{12}…, loaded "
                                         r"[0-9a-f]{12}…\); make a new Engine to run it"):
        engine.predict_batch([image, image])  # its lanes are made now, reading the file again


def test_a_card_sha256_in_capitals_is_the_same_sha256(tmp_path):
    import json

    from foveal.models import file_sha256, load_card

    path = _model(tmp_path / "m.onnx", [helper.make_node("ReduceMean", ["image"], ["log_density"], axes=[1],
                                                         keepdims=1)])
    card = {"name": "m", "input": {"working_size": 64, "pad_multiple": 8, "mean": [0, 0, 0], "std": [1, 1, 1]},
            "output": {"stride": 1}, "sha256": file_sha256(path).upper()}
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert load_card(tmp_path / "m.json").sha256 == file_sha256(path)


def test_a_map_over_the_pixel_limit_is_too_many_pixels_not_a_foreign_png(tmp_path):
    # It came back as a plain InputError saying "not a foveal saliency PNG" about a valid map.
    from foveal import TooManyPixelsError

    SaliencyMap(np.full((20, 30), 1 / 600, np.float32)).to_png(tmp_path / "m.png")
    with pytest.raises(TooManyPixelsError, match="600 pixels, over the limit"):
        SaliencyMap.from_png(tmp_path / "m.png", max_pixels=10)


def test_the_torch_backend_runs_only_networks_known_to_be_the_cards_graph(tmp_path):
    """A user's graph carded as itti-koch ran foveal's own Itti-Koch on the torch backend, and a bare graph beside
    any .safetensors file ran that network, each under the user's graph's sha256."""
    import json

    from foveal.backends.torch_cuda import load_network
    from foveal.errors import BackendUnavailableError
    from foveal.models import load_card

    path = _pooled(tmp_path / "ik.onnx", 16)
    card = {"name": "itti-koch", "input": {"working_size": 64, "pad_multiple": 16, "mean": [0, 0, 0],
                                           "std": [1, 1, 1]}, "output": {"stride": 16}}
    (tmp_path / "ik.json").write_text(json.dumps(card))
    with pytest.raises(BackendUnavailableError, match="no PyTorch definition for model 'itti-koch'"):
        load_network(load_card(tmp_path / "ik.json"))
    stray = _pooled(tmp_path / "net.onnx", 8)
    (tmp_path / "net.safetensors").write_bytes(b"not the graph's weights")
    with pytest.raises(BackendUnavailableError, match="no PyTorch definition for model 'net'"):
        load_network(load_card(stray))
