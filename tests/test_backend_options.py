"""Backend fallback that falls back: each backend gets only its own options, only "unavailable" moves on to the next
one, and nothing at run time imports a top-level ``engine`` module (the torch network ships in foveal.network)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import foveal
from foveal import BackendUnavailableError, Engine, InputError, ModelError, backends
from foveal.models import load_card


def test_each_backend_lists_its_options():
    assert backends.backend_options("onnxruntime") == ("threads",)
    assert {"fp16", "cuda_graph", "max_batch"} <= set(backends.backend_options("tensorrt"))
    assert {"fp16", "cuda_graph"} <= set(backends.backend_options("torch"))


def test_gpu_options_do_not_break_the_cpu_fallback(rgb):
    """device="auto" with fp16=True used to hand fp16 to ONNX Runtime too (TypeError instead of a fallback)."""
    engine = Engine("itti-koch", device="auto", fp16=True, cuda_graph=False)
    assert engine.predict(rgb).shape == rgb.shape[:2]
    if engine.backend == "onnxruntime":
        np.testing.assert_array_equal(engine.predict(rgb).prob, Engine("itti-koch").predict(rgb).prob)


@pytest.mark.parametrize("device, options, match", [
    ("onnxruntime", {"fp16": True}, r"'fp16' is taken by no backend.*onnxruntime takes threads"),
    ("auto", {"turbo": 1}, r"'turbo' is taken by no backend.*tensorrt takes .*torch takes .*onnxruntime takes"),
    ("cpu", {"threads": -1}, "threads must be a whole number"),
    ("cpu", {"threads": "2"}, "threads must be a whole number"),
    ("cpu", {"threads": 10**6}, "threads must be a whole number from 0 .* to 1024"),
])
def test_an_option_no_backend_takes_is_a_clear_error(device, options, match):
    with pytest.raises(InputError, match=match):
        Engine("itti-koch", device=device, **options)


def test_threads_option_reaches_onnxruntime(rgb):
    engine = Engine("itti-koch", device="cpu", threads=1)
    assert engine._backend._session.get_session_options().intra_op_num_threads == 1
    numpy_count = Engine("itti-koch", device="cpu", threads=np.int64(1))  # a count read from a config array
    assert numpy_count._backend._session.get_session_options().intra_op_num_threads == 1
    assert type(numpy_count._backend.threads) is int


def test_only_unavailable_falls_back(monkeypatch):
    """A backend that fails for another reason (a broken model) is reported, not skipped for the next one."""
    from foveal.backends import onnxruntime as ort_backend

    calls = []

    class Unavailable:
        name = "tensorrt"

        @classmethod
        def unavailable(cls):
            return None

        def __init__(self, card, *, fp16=True):
            calls.append("tensorrt")
            raise BackendUnavailableError("no GPU after all")

    class Broken(Unavailable):
        name = "torch"

        def __init__(self, card, *, fp16=True):
            calls.append("torch")
            raise ModelError("model 'x' is damaged")

    classes = {"tensorrt": Unavailable, "torch": Broken, "onnxruntime": ort_backend.OnnxRuntimeBackend}
    monkeypatch.setattr(backends, "_backend_class", classes.__getitem__)
    card = load_card("itti-koch")
    assert backends.select(card, ["tensorrt", "onnxruntime"], fp16=True).name == "onnxruntime"
    with pytest.raises(ModelError, match="damaged"):
        backends.select(card, "auto", fp16=True)
    assert calls == ["tensorrt", "tensorrt", "torch"]


def test_torch_backend_runs_without_any_engine_package(monkeypatch, rgb):
    pytest.importorskip("torch", reason="PyTorch not installed")
    from foveal.backends import torch_cuda

    monkeypatch.setitem(sys.modules, "engine", None)  # `import engine` now fails, as from an installed wheel
    for name in ("itti-koch", "default"):
        backend = torch_cuda.TorchBackend(load_card(name), device="cpu")
        x = np.zeros((1, 3, 64, 96), np.float32)
        assert backend.run(x).shape == (1, 1, 64 // load_card(name).stride, 96 // load_card(name).stride)


def test_a_foreign_engine_package_on_the_path_changes_nothing(tmp_path, rgb):
    """An unrelated top-level ``engine`` package (a common name) made Engine(device="auto") die on import."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("raise RuntimeError('not foveal engine')\n")
    np.save(tmp_path / "rgb.npy", rgb)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import foveal
        from foveal import backends
        print(sorted(backends.available_backends()))
        engine = foveal.Engine("itti-koch", device="auto")
        smap = engine.predict(np.load({str(tmp_path / 'rgb.npy')!r}))
        print(engine.backend, smap.shape, "engine" in sys.modules, "torch" in sys.modules)
        import importlib.util
        if importlib.util.find_spec("torch"):  # the torch backend's own network, with the foreign package in reach
            from foveal.backends.torch_cuda import TorchBackend
            TorchBackend(foveal.load_card("itti-koch"), device="cpu").run(np.zeros((1, 3, 64, 64), np.float32))
        print("engine" in sys.modules)
    """)
    package_root = os.path.dirname(foveal.__path__[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), package_root])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    *_, backend_line, after_torch = proc.stdout.splitlines()
    assert backend_line.endswith(f"{rgb.shape[:2]} False False"), proc.stdout  # torch only imported on use
    assert after_torch == "False"


def test_an_unwritable_tensorrt_cache_is_a_warning_not_a_failure(tmp_path, caplog):
    """The plan cache is an output too: a folder the process cannot write costs a rebuild later, not this Engine."""
    from foveal.backends import tensorrt

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with caplog.at_level("WARNING", logger="foveal"):
        tensorrt._write(blocker / "model.plan", b"plan")
    assert "cache not written" in caplog.text and blocker.read_text() == "x"


def test_fp32_asked_of_a_gpu_backend_is_run_in_fp32(monkeypatch):
    """TensorRT 10 and torch default to fp16 kernels, and precision="fp32" never said otherwise: an fp32 engine on a
    GPU ran (and reported) fp16."""
    seen = []

    def capture(card, device, strict=False, graphs=None, **options):
        seen.append(options)
        raise BackendUnavailableError("captured")

    monkeypatch.setattr(backends, "select", capture)
    for device in ("auto", "cuda", ["torch", "onnxruntime"]):
        with pytest.raises(BackendUnavailableError):
            Engine("itti-koch", device=device, precision="fp32")
    with pytest.raises(BackendUnavailableError):
        Engine("itti-koch", device="cpu", precision="fp32")  # ONNX Runtime takes no fp16: none is passed
    with pytest.raises(BackendUnavailableError):
        Engine("itti-koch", device="auto")  # auto keeps each backend's own default
    assert seen == [{"fp16": False}] * 3 + [{}, {}]
    with pytest.raises(InputError, match="precision='fp32' with fp16=True"):
        Engine("itti-koch", device="cuda", precision="fp32", fp16=True)
    for agreeing in (False, np.False_):  # NumPy's False agrees as well
        with pytest.raises(BackendUnavailableError):
            Engine("itti-koch", device="cuda", precision="fp32", fp16=agreeing)
