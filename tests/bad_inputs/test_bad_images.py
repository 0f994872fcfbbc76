"""Bad-input campaign, images: mutated encodings of every format foveal reads, forged headers and odd arrays.

Whatever the bytes, decoding returns an (H, W, 3) uint8 image or raises ImageError (a FovealError with a one-line
message), and an Engine gives a map that sums to 1 or an ImageError: never another exception, a hang or a crash.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from foveal import Engine, ImageError, load_image

# Pillow warns about corrupt metadata it skips and about large images: warnings, not failures (the CLI silences them).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL", "ignore::RuntimeWarning:PIL")

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def _encode(fmt: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(len(fmt))
    image = Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = {(fmt, mode): _encode(fmt, mode) for fmt in FORMATS for mode in ("RGB", "L")
         if not (fmt == "JPEG" and mode == "RGBA")}


@st.composite
def mutated(draw) -> bytes:
    """A valid small encoding with a few bytes overwritten, cut short, or with bytes inserted."""
    data = bytearray(draw(st.sampled_from(sorted(SEEDS.values(), key=len))))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "zero_run"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[pos:]
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[pos:pos + 8] = b"\x00" * 8
    return bytes(data)


def _ok_or_image_error(call) -> np.ndarray | None:
    try:
        pixels = call()
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    return pixels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_encodings_decode_or_raise_image_error(data):
    _ok_or_image_error(lambda: load_image(data))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_files_through_the_engine(tmp_path, data, itti):
    path = tmp_path / "creative.img"
    path.write_bytes(data)
    try:
        smap = itti.predict(path)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert abs(smap.total - 1) < 1e-4 and np.isfinite(smap.prob).all()


def _png(width: int, height: int, bit_depth: int, colour: int, body: bytes = b"") -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + (chunk(b"IDAT", zlib.compress(body)) if body else b"") + chunk(b"IEND", b""))


@settings(max_examples=150, deadline=None)
@given(width=st.integers(0, 2**31 - 1), height=st.integers(0, 2**31 - 1),
       bit_depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]), colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
       body=st.binary(max_size=64))
def test_forged_png_headers_never_allocate_the_declared_size(width, height, bit_depth, colour, body):
    """A header may declare 2^31 x 2^31 pixels: the pixel limit is checked before Pillow allocates anything."""
    pixels = _ok_or_image_error(lambda: load_image(_png(width, height, bit_depth, colour, body), max_pixels=10**6))
    if pixels is not None:
        assert pixels.shape[:2] == (height, width)


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.int8, np.int64, np.float32, np.float64, np.bool_, np.complex64,
                              object, "U3", "datetime64[s]"]),
       shape=st.lists(st.integers(0, 6), min_size=0, max_size=4))
def test_odd_arrays_are_images_or_image_errors(dtype, shape):
    array = np.zeros(shape, dtype=dtype)
    _ok_or_image_error(lambda: load_image(array))


@pytest.fixture(scope="module")
def itti() -> Engine:
    return Engine("itti-koch")
