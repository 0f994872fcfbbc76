"""The TensorRT backend's logic that needs neither TensorRT nor a GPU: profiles, plan cache keys, cache folder,
and the errors a machine without TensorRT or without a GPU gets. (A build check with TensorRT for RTX is in
test_tensorrt_rtx.py; running engines needs an NVIDIA GPU and TensorRT: benchmarks/gpu_check.sh.)"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from foveal import backends, gpu
from foveal.backends import tensorrt as trt_backend
from foveal.backends.trt_builder import Profile, cache_key, choose_profile, profiles_for
from foveal.errors import BackendUnavailableError, InputError
from foveal.geometry import plan
from foveal.models import load_card


@pytest.fixture
def card():
    return load_card("itti-koch")


@pytest.mark.parametrize("hw", [(1, 1), (1, 4000), (4000, 1), (480, 640), (640, 480), (384, 384), (1080, 1920),
                                (97, 13), (13, 97), (1000, 999), (3000, 750), (750, 3000), (2, 4096)])
def test_every_padded_input_fits_a_profile(card, hw) -> None:
    profiles = profiles_for(card, max_batch=64)
    padded = plan(*hw, card).padded_hw
    for batch in (1, 64):
        index = choose_profile(profiles, (batch, 3, *padded))
        assert profiles[index].contains((batch, 3, *padded))


def test_profiles_by_orientation(card) -> None:
    profiles = profiles_for(card, max_batch=16, opt_batch=4)
    assert [p.name for p in profiles] == ["square", "landscape", "portrait"]
    assert profiles[choose_profile(profiles, (2, 3, 384, 384))].name == "square"
    assert profiles[choose_profile(profiles, (2, 3, 288, 384))].name == "landscape"
    assert profiles[choose_profile(profiles, (2, 3, 384, 32))].name == "portrait"
    for p in profiles:
        assert p.min[0] == 1 and p.opt[0] == 4 and p.max[0] == 16
        assert all(lo <= o <= hi for lo, o, hi in zip(p.min, p.opt, p.max))


def test_long_side_rounds_up_to_the_pad_multiple(card) -> None:
    odd = replace(card, input=replace(card.input, working_size=400))  # 400 → 416 with pad 32
    profiles = profiles_for(odd)
    assert profiles[0].max[2:] == (416, 416)
    assert choose_profile(profiles, (1, 3, *plan(300, 1000, odd).padded_hw)) == 1


@pytest.mark.parametrize("shape, match", [((65, 3, 384, 384), "fits no TensorRT profile"),
                                          ((1, 3, 384, 512), "fits no TensorRT profile"),
                                          ((1, 3, 224, 224), "fits no TensorRT profile")])
def test_shape_outside_every_profile_is_an_input_error(card, shape, match) -> None:
    with pytest.raises(InputError, match=match):
        choose_profile(profiles_for(card, max_batch=64), shape)


def test_bad_batch_bounds(card) -> None:
    with pytest.raises(InputError, match="opt_batch"):
        profiles_for(card, max_batch=4, opt_batch=8)


def test_cache_key_changes_with_everything_that_changes_the_engine(card) -> None:
    profiles = profiles_for(card)
    base = ("a" * 64, "tensorrt 10.13.0", "NVIDIA H100 80GB HBM3", "sm90", profiles, "fp16")
    key = cache_key(*base)
    assert key == cache_key(*base) and len(key) == 32
    variants = [("b" * 64, *base[1:]), (base[0], "tensorrt 11.4.0", *base[2:]),
                (*base[:2], "NVIDIA A100-SXM4-80GB", *base[3:]), (*base[:3], "sm80", *base[4:]),
                (*base[:4], profiles_for(card, max_batch=32), "fp16"), (*base[:5], "onnx-types")]
    keys = {cache_key(*v) for v in variants}
    assert key not in keys and len(keys) == len(variants)


def test_cache_dir_lookup(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOVEAL_TRT_CACHE", str(tmp_path / "plans"))
    assert trt_backend.cache_dir() == tmp_path / "plans"
    monkeypatch.delenv("FOVEAL_TRT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert trt_backend.cache_dir() == tmp_path / "foveal" / "trt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert trt_backend.cache_dir() == Path.home() / ".cache" / "foveal" / "trt"


def test_without_a_gpu_tensorrt_is_never_touched(monkeypatch, card) -> None:
    monkeypatch.setattr(gpu, "unavailable", lambda: "no CUDA device found")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # any import of it would raise
    assert trt_backend.TensorRTBackend.unavailable() == "no CUDA device found"
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        trt_backend.TensorRTBackend(card)


def test_missing_tensorrt_is_a_clear_backend_error(monkeypatch, card) -> None:
    monkeypatch.setattr(gpu, "unavailable", lambda: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    assert "pip install tensorrt" in trt_backend.TensorRTBackend.unavailable()
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        trt_backend.TensorRTBackend(card)
    # select() moves on to the next backend and says why it skipped TensorRT.
    assert "tensorrt" not in backends.available_backends()


def test_int8_graph_is_refused_before_anything_else(monkeypatch) -> None:
    monkeypatch.setattr(gpu, "unavailable", lambda: None)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # refused before TensorRT or CuPy is needed
    with pytest.raises(BackendUnavailableError, match="builds from the fp32 graph"):
        trt_backend.TensorRTBackend(load_card("default").variant("int8"))


def test_auto_without_gpu_lands_on_onnxruntime(card) -> None:
    if gpu.unavailable() is None:
        pytest.skip("this machine has a GPU: auto may pick a GPU backend")
    assert backends.select(card, "auto").name == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match="tensorrt: .*torch: "):
        backends.select(card, "cuda")


def test_profile_contains_is_inclusive() -> None:
    p = Profile("x", (1, 3, 32, 32), (2, 3, 64, 64), (4, 3, 64, 64))
    assert p.contains((1, 3, 32, 32)) and p.contains((4, 3, 64, 64))
    assert not p.contains((5, 3, 64, 64)) and not p.contains((1, 3, 31, 64))
