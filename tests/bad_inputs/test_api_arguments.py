"""Bad-input campaign, API arguments: whatever a caller passes to Engine, predict_batch, the postprocess kernel or a
map's writers, the answer is a result or a FovealError with a one-line message, never another exception."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from foveal import Engine, FovealError, SaliencyMap, cpu, load_image

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.binary(max_size=8), st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2), st.just(np.float32(2.5)), st.just(object()),
)


def _contained(call):
    """Run ``call``; only a FovealError (one line) may escape."""
    try:
        return call()
    except FovealError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        return exc


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine("itti-koch")


@settings(max_examples=120, deadline=None)
@given(model=st.one_of(st.just("itti-koch"), ANY), device=st.one_of(st.sampled_from(["cpu", "auto", "cuda"]), ANY),
       precision=st.one_of(st.sampled_from(["auto", "fp32", "int8"]), ANY),
       max_pixels=st.one_of(st.just(10**6), ANY), blur_sigma=st.one_of(st.none(), ANY),
       options=st.dictionaries(st.sampled_from(["threads", "fp16", "cuda_graph", "turbo", "max_batch"]), ANY,
                               max_size=2))
def test_engine_constructor(model, device, precision, max_pixels, blur_sigma, options):
    assume(model != "default")  # the default model's session is slow to build; it is exercised elsewhere
    _contained(lambda: Engine(model, device=device, precision=precision, max_pixels=max_pixels,
                              blur_sigma=blur_sigma, **options))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.one_of(ANY, st.lists(ANY, max_size=3)), batch_size=st.one_of(st.just(2), ANY),
       errors=st.one_of(st.sampled_from(["raise", "return"]), ANY))
@example(images=["\n"], batch_size=2, errors="raise")  # found by this test: a file name's line break in the message
@example(images="a\r\nb.png", batch_size=2, errors="return")
def test_predict_batch_arguments(engine, images, batch_size, errors):
    result = _contained(lambda: engine.predict_batch(images, batch_size=batch_size, errors=errors))
    if isinstance(result, list):
        assert all(isinstance(r, (SaliencyMap, FovealError)) for r in result)


@settings(max_examples=150, deadline=None)
@given(grid=st.one_of(st.just(np.zeros((3, 4), np.float32)), st.lists(st.floats(), max_size=4), ANY),
       out_hw=st.one_of(st.just((8, 8)), st.tuples(st.integers(-5, 2**40), st.integers(-5, 2**40)), ANY),
       valid_hw=st.one_of(st.just((3.0, 4.0)), st.tuples(st.floats(), st.floats()), ANY),
       sigma=st.one_of(st.floats(0, 5), ANY))
def test_postprocess_arguments(grid, out_hw, valid_hw, sigma):
    """The kernel behind every map: bad sizes and sigmas are InputErrors, never a C++ crash or bad_alloc."""
    if isinstance(out_hw, tuple) and len(out_hw) == 2 and all(isinstance(v, int) for v in out_hw):
        assume(out_hw[0] * out_hw[1] <= 10**6)  # a legitimately huge map is slow, not an error
    try:
        prob = cpu.postprocess(grid, out_hw, valid_hw, sigma)
    except FovealError as exc:
        assert "\n" not in str(exc)
    except TypeError as exc:  # the kernels' documented answer to a wrong dtype (cpu module docstring)
        assert "must be" in str(exc)
    else:
        assert abs(float(prob.sum(dtype=np.float64)) - 1) < 1e-4


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=20), bits=st.one_of(st.sampled_from([8, 16]), ANY))
def test_map_writers_with_odd_paths_and_bits(tmp_path, name, bits):
    smap = SaliencyMap(np.full((4, 5), 1 / 20, np.float32))
    _contained(lambda: smap.to_png(tmp_path / "maps" / name, bits=bits))
    _contained(lambda: smap.to_npy(tmp_path / "maps" / name))
    _contained(lambda: SaliencyMap.from_png(tmp_path / "maps" / name))


def test_cli_error_for_a_file_name_with_a_line_break(tmp_path, capsys):
    from foveal.cli import main

    path = tmp_path / "two\nlines.png"
    path.write_bytes(b"not an image")
    assert main(["-q", "predict", str(path), "-o", str(tmp_path / "out"), "--model", "itti-koch"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "two\\nlines.png" in err


@settings(max_examples=40, deadline=None)
@given(max_pixels=ANY)
def test_pixel_limits_everywhere(max_pixels):
    """A limit of NaN used to mean no limit at all in decode; every reader takes the same checked limit."""
    image = np.zeros((4, 4, 3), np.uint8)
    for call in (lambda: load_image(image, max_pixels=max_pixels), lambda: Engine("itti-koch", max_pixels=max_pixels)):
        result = _contained(call)
        if not isinstance(result, FovealError):
            assert isinstance(max_pixels, (int, float, np.floating)) and max_pixels >= 1
