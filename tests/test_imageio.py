"""Decoding: modes, EXIF orientation, limits and every kind of bad input become ImageError, never a crash."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from foveal import ImageError, InputError, TooManyPixelsError, load_image
from foveal.imageio import DecodedImage, check_header, decode


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, kind, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_path_bytes_pil_and_array_agree(tmp_path, rgb):
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    for src in (path, str(path), path.read_bytes(), Image.fromarray(rgb), rgb):
        out = load_image(src)
        assert out.dtype == np.uint8 and out.shape == (90, 120, 3) and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("hw", [(1, 1), (3, 7), (1081, 1921), (4000, 5000)])  # the last in several Pillow blocks
def test_rgb_pixels_are_pillows_whichever_way_they_are_copied_out(hw):
    pixels = np.random.default_rng(0).integers(0, 256, (*hw, 3), np.uint8)
    out = load_image(Image.fromarray(pixels))
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


def test_sha256_is_of_the_file_bytes(tmp_path, rgb):
    import hashlib

    data = _encode(Image.fromarray(rgb))
    assert decode(data).sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "F", "1", "YCbCr"])
def test_modes_become_rgb(mode, rgb):
    image = Image.fromarray(rgb).convert(mode) if mode not in ("I;16", "F") else Image.fromarray(rgb).convert("L").convert(mode)
    out = load_image(image)
    assert out.shape == (90, 120, 3) and out.dtype == np.uint8


def test_sixteen_bit_grey_png_uses_full_range():
    values = np.array([[0, 257 * 128, 65535]], np.uint16)
    out = load_image(_encode(Image.fromarray(values)))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])


def test_a_32_bit_grey_of_8_bit_values_keeps_their_brightness():
    """Image.convert("I") of an 8-bit grey keeps its 0..255 values; they were read as 16-bit and came out near black
    (mode F, whose range Pillow does not declare either, was already read by its peak)."""
    grey = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_array_equal(load_image(Image.fromarray(grey).convert("I"))[0, :, 0], [0, 128, 255])
    wide = Image.fromarray(np.array([[0, 257 * 128, 65535]], np.int32), "I")
    np.testing.assert_array_equal(load_image(wide)[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 3), (2, 3, 4)])
def test_a_uint16_array_of_8_bit_values_is_refused_not_shown_black(shape):
    """A uint16 array holding 0..255 (8-bit data in a wider array) came out almost black without a word."""
    values = np.full(shape, 200, np.uint16)
    if len(shape) == 3 and shape[2] == 4:
        values[:, :, 3] = 65535  # an opaque 16-bit alpha: the colours still decide
    with pytest.raises(ImageError, match=r"every value of this one is in 0\.\.255.*a\.astype\(np\.uint8\)"):
        load_image(values)
    assert (load_image(np.zeros(shape[:2], np.uint16)) == 0).all()  # black is black at any depth
    np.testing.assert_array_equal(load_image(values * 257)[0, 0], [200, 200, 200])


def test_alpha_composites_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)  # opaque black stays black
    out = load_image(_encode(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[1, 1], [255, 255, 255])  # fully transparent → white
    np.testing.assert_array_equal(load_image(rgba)[1, 1], [255, 255, 255])


def test_palette_with_transparency():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    out = load_image(_encode(image, transparency=0))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])


def test_exif_orientation_is_applied(rgb):
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    out = load_image(_encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape == (120, 90, 3)


def test_orientation_comes_from_exif_only_as_a_browser_reads_it():
    """Pillow's getexif also takes XMP's tiff:Orientation and ImageMagick's "Raw profile type exif" text chunk,
    which browsers ignore: such images were turned."""
    from PIL import PngImagePlugin

    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = (255, 0, 0)
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="3"/></rdf:RDF>'
           '</x:xmpmeta>')
    image = Image.fromarray(pixels)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    exif = Image.Exif()
    exif[0x0112] = 3
    raw = exif.tobytes()
    profile = PngImagePlugin.PngInfo()
    profile.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n", zip=True)
    for data in (_encode(image, "JPEG", xmp=xmp.encode(), quality=95), _encode(image, pnginfo=info),
                 _encode(image, pnginfo=profile)):
        assert load_image(data)[5, 0, 0] > 200  # red on the left, as shown
    for fmt in ("JPEG", "PNG", "WEBP"):  # a real EXIF block still turns it
        assert load_image(_encode(image, fmt, exif=raw, quality=95))[5, 0, 0] < 60


def test_an_animated_png_is_read_as_its_first_frame_not_its_fallback_image():
    """An APNG whose default image is not part of the animation: browsers show the first frame, Pillow's frame 0
    is the default image."""
    red, lime, blue = (Image.new("RGB", (20, 10), c) for c in ("red", "lime", "blue"))
    for default_image, expected in ((True, [0, 255, 0]), (False, [255, 0, 0])):
        buf = io.BytesIO()
        red.save(buf, "PNG", save_all=True, append_images=[lime, blue], default_image=default_image)
        np.testing.assert_array_equal(load_image(buf.getvalue())[0, 0], expected)


def test_a_near_square_turned_jpeg_decoded_reduced_keeps_its_displayed_shape():
    """Decoded at a reduction, a 799x800 JPEG came out square, so its EXIF turn went unnoticed and the map was made
    800 high and 799 wide."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.new("RGB", (800, 799), (90, 120, 40)), "JPEG", exif=exif.tobytes())
    for min_side in (None, 384, 100):
        decoded = decode(data, min_side=min_side)
        assert decoded.image_hw == (800, 799), min_side
        assert decoded.pixels.shape[0] >= decoded.pixels.shape[1]


@pytest.mark.parametrize("mode, key", [("L", 5), ("RGB", (10, 20, 30)), ("I;16", 500)])
def test_a_colour_key_is_transparent_like_alpha(mode, key):
    """A PNG's tRNS colour key on a grey or RGB image was read as its key colour, not as the white beneath."""
    shape, dtype = {"L": ((2, 2), np.uint8), "RGB": ((2, 2, 3), np.uint8), "I;16": ((2, 2), np.uint16)}[mode]
    values = np.zeros(shape, dtype)
    values[0, 0] = key
    out = load_image(_encode(Image.fromarray(values), transparency=key))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])


def test_float_and_32_bit_images_outside_their_range_are_refused(tmp_path):
    """One +inf pixel turned a float TIFF black; negative 32-bit values wrapped round to white."""
    ramp = np.tile(np.linspace(0, 1, 20, dtype=np.float32), (4, 1))
    ramp[0, 0] = np.inf
    with pytest.raises(ImageError, match="NaN or infinite values.*8- or 16-bit"):
        load_image(_encode(Image.fromarray(ramp), "TIFF"))
    signed = np.arange(-10, 10, dtype=np.int32).reshape(4, 5) * 100
    with pytest.raises(ImageError, match="values outside 0..65535"):
        load_image(_encode(Image.fromarray(signed), "TIFF"))
    np.testing.assert_array_equal(load_image(_encode(Image.fromarray(np.abs(signed)), "TIFF"))[0, :2, 0], [4, 4])


def test_a_jpeg_pillow_cannot_decode_is_named_as_one(rgb):
    data = bytearray(_encode(Image.fromarray(rgb), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 12  # the frame's sample precision: 12-bit
    with pytest.raises(ImageError, match=r"a JPEG that cannot be decoded here \(12-bit samples\)"):
        load_image(bytes(data))
    # Fill bytes before a marker, and a frame behind more than a megabyte of ICC profile, are still read.
    icc = b"".join(b"\xff\xe2\xff\xf0" + bytes(0xFFEE) for _ in range(17))
    with pytest.raises(ImageError, match=r"\(12-bit samples\)"):
        load_image(bytes(data[:2] + icc + data[2:sof] + b"\xff\xff" + data[sof:]))
    data[sof + 4] = 8
    # An ordinary JPEG cut short, or JPEG's first bytes before garbage, is damaged, not of another kind.
    for damaged in (data[:20], data[:sof], b"\xff\xd8\xff" + b"hello" * 20):
        with pytest.raises(ImageError, match="a corrupt or truncated JPEG"):
            load_image(bytes(damaged))


def test_a_colour_key_of_a_low_bit_depth_grey_png_is_its_raw_sample():
    """Pillow scales 1-, 2- and 4-bit greys to 0..255 but hands their tRNS key over raw: the key never matched."""
    one = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    np.testing.assert_array_equal(load_image(_encode(one, transparency=0))[..., 0], [[255, 255], [255, 255]])
    four = Image.fromarray(np.array([[0, 51], [51, 255]], np.uint8))
    data = _encode(four, bits=4, transparency=3)
    np.testing.assert_array_equal(load_image(data)[..., 0], [[0, 255], [255, 255]])
    # The same file opened by the caller (lazily, as Image.open does) gives the same pixels.
    np.testing.assert_array_equal(load_image(Image.open(io.BytesIO(data)))[..., 0], [[0, 255], [255, 255]])


def test_a_colour_key_of_a_16_bit_rgb_png_is_compared_at_8_bits():
    """Pillow reads a 16-bit RGB PNG as 8-bit samples but hands its tRNS key over in 16 bits: the key never matched,
    and transparent pixels showed their colour, not the white beneath."""
    samples = np.array([[[10, 20, 30], [40, 50, 60]]], np.uint16) * 257  # 1x2, as 8-bit values widened
    rows = b"\0" + samples.astype(">u2").tobytes()
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
            + _chunk(b"tRNS", struct.pack(">HHH", *samples[0, 0].tolist())) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))
    np.testing.assert_array_equal(load_image(data), [[[255, 255, 255], [40, 50, 60]]])


@pytest.mark.parametrize("payload, match", [
    (b"", "empty"),
    (b"not an image at all", "not a recognised image format"),
])
def test_garbage_bytes(payload, match):
    with pytest.raises(ImageError, match=match):
        load_image(payload)


def test_truncated_file(rgb):
    data = _encode(Image.fromarray(rgb), "JPEG")
    with pytest.raises(ImageError, match="corrupt, truncated"):
        load_image(data[: len(data) // 2])


def test_a_small_pixel_limit_is_named_in_pixels(rgb):
    with pytest.raises(TooManyPixelsError, match=r"32x32 = 1,024 pixels, over the limit of 1,000 pixels") as info:
        decode(_encode(Image.fromarray(rgb[:32, :32]), "PNG"), max_pixels=1000)
    assert (info.value.detail, info.value.limit) == ("32x32 = 1,024 pixels", 1000)


def test_a_count_just_over_the_limit_is_not_rounded_onto_it():
    """10001x10000 against 100 MP read "100.0 MP, over the limit of 100.0 MP"."""
    from foveal.imageio import _check_size

    with pytest.raises(TooManyPixelsError, match="10001x10000 = 100,010,000 pixels, over the limit of 100,000,000;"):
        _check_size((10001, 10000), 100_000_000, "big.png")
    with pytest.raises(TooManyPixelsError, match="20000x10000 = 200.0 MP, over the limit of 100.0 MP;"):
        _check_size((20000, 10000), 100_000_000, "big.png")


def test_check_header_refuses_before_decoding(rgb):
    """The header alone decides: a bomb or a non-image is refused, a truncated image passes (decode reports it)."""
    data = _encode(Image.fromarray(rgb[:32, :32]), "PNG")
    check_header(data[:60], max_pixels=1024)
    with pytest.raises(TooManyPixelsError):
        check_header(data, max_pixels=1000)
    with pytest.raises(TooManyPixelsError, match="too large by its header"):
        check_header(_png_header_only(20000, 20000))  # over twice Pillow's limit (raised to max_pixels, 1e8)
    with pytest.raises(ImageError, match="not a recognised image format"):
        check_header(b"GIF? no")
    with pytest.raises(ImageError, match="no data"):
        check_header(b"")


@pytest.mark.parametrize("fmt", ["ICO", "EPS", "PPM", "TGA", "PCX", "DDS", "QOI", "JPEG2000", "SGI"])
def test_formats_beyond_the_six_are_refused_unopened(fmt, rgb):
    """Pillow opens dozens of formats, EPS by running Ghostscript on the file; foveal reads the six it documents."""
    data = _encode(Image.fromarray(rgb[:16, :16]), fmt)
    with pytest.raises(ImageError, match=r"not a recognised image format \(try PNG, JPEG, WebP, TIFF, BMP or GIF\)"):
        load_image(data)


def test_one_of_the_six_whose_header_pillow_refuses_is_named_as_that_format():
    """A PNG of 0x0 pixels was "not a recognised image format (try PNG, ...)": it is a PNG, and says so."""
    empty_png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)) + _chunk(
        b"IEND", b"")
    for data, kind in ((empty_png, "PNG"), (b"GIF89a" + bytes(3), "GIF"), (b"RIFF\0\0\0\0WEBPxx", "WebP"),
                       (b"II*\0" + bytes(4), "TIFF"), (b"BM" + bytes(10), "BMP")):
        with pytest.raises(ImageError, match=f"^<bytes>: a {kind} whose header cannot be read"):
            load_image(data)


def test_an_icon_over_a_huge_png_is_refused_from_its_header():
    """An ICO's directory said 16x16 over a PNG of 12000x12000: the pixel limit, checked on the stated size, passed,
    and a 445 KB upload was decoded into 390 MB of pixels before the real size was refused."""
    side = 3000
    rows = zlib.compress((b"\0" + b"\x80" * (3 * side)) * side, 9)
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
           + _chunk(b"IDAT", rows) + _chunk(b"IEND", b""))
    icon = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png
    for call in (check_header, load_image):
        with pytest.raises(ImageError, match="not a recognised image format"):
            call(icon, max_pixels=1_000_000)


def test_a_cameras_mpo_is_read_as_its_first_picture(rgb):
    """MPO (a JPEG holding a second picture, as cameras write them) comes through Pillow's JPEG opener."""
    second = Image.fromarray(255 - rgb)
    data = _encode(Image.fromarray(rgb), "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert np.array_equal(load_image(data), load_image(_encode(Image.fromarray(rgb), "JPEG")))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_pixel_limit_checked_before_decoding():
    # A 10000×10000 PNG of zeros compresses to a few hundred kB: a decompression bomb in miniature.
    big = _encode(Image.new("L", (10000, 10000)))
    with pytest.raises(ImageError, match="over the limit of"):
        load_image(big, max_pixels=10_000_000)


def test_max_pixels_not_pillows_limit_decides(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse anything over 200 pixels
    assert load_image(_encode(Image.new("L", (30, 30)))).shape == (30, 30, 3)
    with pytest.raises(ImageError, match="over the limit of"):
        load_image(_encode(Image.new("L", (30, 30))), max_pixels=500)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels and holds none of them."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + _chunk(
        b"IEND", b"")


def test_max_pixels_above_pillows_own_bomb_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(20000, 20000))  # 400 MP: over Pillow's 179 MP, under max_pixels=5e8
    with pytest.raises(ImageError, match="over the limit of"):
        load_image(path)
    with pytest.raises(ImageError, match="corrupt, truncated"):  # got past the header: no bomb error
        load_image(path, max_pixels=int(5e8))


@pytest.mark.parametrize("array, match", [
    (np.zeros((4, 4, 3), np.float32), "dtype"),
    # The refusals of a data scientist's usual arrays said what was wrong, not how to convert them.
    (np.zeros((4, 4, 3), np.float64), r"got float64; convert it: \(a \* 255\).round\(\).astype\(np.uint8\) for "
     r"values in 0..1, a.round\(\).astype\(np.uint8\) for 0..255"),
    (np.zeros((4, 4, 3), np.int64), r"got int64; convert it: a.astype\(np.uint8\) for values in 0..255"),
    (np.zeros((3, 8, 8), np.uint8), r"got \(3, 8, 8\); channels go last: a.transpose\(1, 2, 0\)"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "no pixels"),
])
def test_bad_arrays(array, match):
    with pytest.raises(ImageError, match=match):
        load_image(array)


def test_unsupported_type():
    with pytest.raises(ImageError, match="expected a path"):
        load_image(12345)  # type: ignore[arg-type]


def test_premultiplied_grey_is_read_as_its_straight_alpha_twin(rgb):
    """Pillow converts La only to LA: La was refused with "conversion from La to L not supported"."""
    la = Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA")
    expected = load_image(la).astype(np.int16)
    assert np.abs(load_image(la.convert("La")).astype(np.int16) - expected).max() <= 1  # premultiplied: rounding


@pytest.mark.parametrize("image, match", [
    (lambda path: open(path, "rb"), r"got BufferedReader; pass its contents: image.read\(\)$"),
    (lambda path: io.BytesIO(path.read_bytes()), r"got BytesIO; pass its contents: image.read\(\)$"),
    (lambda path: _ArrayLike(), r"got _ArrayLike; pass it as a NumPy array: np.asarray\(image\)$"),
])
def test_a_file_object_or_an_array_like_is_told_how_to_pass_it(image, match, tmp_path, rgb):
    """A file object, an open upload or a tensor was refused naming the types taken, not how to get to one."""
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    src = image(path)
    with pytest.raises(ImageError, match=match):
        load_image(src)
    if hasattr(src, "close"):
        src.close()


def test_a_path_given_as_bytes_is_told_to_be_text(tmp_path, rgb):
    """Bytes are an image's contents; a path as bytes was "not a recognised image format"."""
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(ImageError, match=r"these bytes name a file, .*pass the path as text: os.fsdecode\(path\)$"):
        load_image(bytes(path))
    with pytest.raises(ImageError, match="not a recognised image format"):
        load_image(bytes(tmp_path / "missing.png"))


def test_a_torch_tensor_is_told_how_to_pass_it(rgb):
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    with pytest.raises(ImageError, match=r"got Tensor; pass it as a NumPy array: image.cpu\(\).numpy\(\)$"):
        load_image(torch.from_numpy(rgb))


class _ArrayLike:
    """An array-like that is no ndarray (xarray, JAX, CuPy...)."""

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)


def test_pil_images_pillow_cannot_read(rgb):
    closed = Image.fromarray(rgb)
    closed.close()
    with pytest.raises(ImageError, match="closed image"):
        load_image(closed)


def test_from_png_refuses_palette_and_bad_provenance(tmp_path):
    from PIL import PngImagePlugin

    from foveal import InputError, SaliencyMap

    info = PngImagePlugin.PngInfo()
    info.add_text("foveal:scale", "0.001")
    Image.fromarray(np.array([[0, 100, 200]], np.uint8)).convert("P").save(tmp_path / "p.png", pnginfo=info)
    with pytest.raises(InputError, match="a P image; maps are 8- or 16-bit grey"):  # indices times scale otherwise
        SaliencyMap.from_png(tmp_path / "p.png")
    with pytest.raises(InputError, match="provenance: expected a dict"):
        SaliencyMap(np.full((2, 2), 0.25, np.float32), provenance=[1, 2])
    # A map saved again by a tool that drops text chunks: it said only "KeyError: 'foveal:scale'".
    Image.fromarray(np.array([[0, 100, 200]], np.uint8)).save(tmp_path / "stripped.png")
    with pytest.raises(InputError, match=r"no foveal:scale text chunk, .*strips PNG metadata.*or its --npy"):
        SaliencyMap.from_png(tmp_path / "stripped.png")


@pytest.mark.parametrize("pixels, hw, match", [
    (np.zeros((10, 10), np.uint8), (0, 0), "non-empty"),
    (np.zeros((10, 10, 3), np.float32), (0, 0), "float32"),
    (np.zeros((0, 10, 3), np.uint8), (0, 0), "non-empty"),
    ("pixels", (0, 0), "got str"),
    (np.zeros((10, 10, 3), np.uint8), (5, 5), "at least the pixels'"),
    (np.zeros((10, 10, 3), np.uint8), (10.5, 10), "whole numbers"),
])
def test_decoded_image_is_checked_when_made(pixels, hw, match):
    with pytest.raises(ImageError, match=match):
        DecodedImage(pixels, "sha", "made by hand", hw)


def test_a_decoded_image_keeps_to_the_pixel_limit_by_its_full_size():
    """A reduced rendering stands for its full-size image: the map is made at image_hw, so the limit applies there."""
    small = DecodedImage(np.zeros((10, 10, 3), np.uint8), "sha", "reduced", (1000, 1000))
    assert decode(small) is small
    with pytest.raises(TooManyPixelsError, match="1000x1000"):
        decode(small, max_pixels=10_000)
    strided = DecodedImage(np.zeros((10, 20, 3), np.uint8)[:, ::2], "sha", "strided")
    assert strided.pixels.flags.c_contiguous and strided.image_hw == (10, 10)


def test_an_ndarray_subclass_is_read_as_the_plain_array_it_holds():
    """np.matrix went on into NumPy as itself: np.repeat on its (H, W, 1) view corrupted the heap (NumPy 2.4), and a
    contiguous one raised a bare ValueError."""
    import warnings

    grey = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # NumPy discourages np.matrix; users still have them
        matrices = [np.asmatrix(grey), np.asmatrix(np.zeros((600, 600, 3), np.uint8)[:, :, 0])]
    for image in matrices:
        expected = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(decode(image).pixels, expected)


def _pillow_reference(data: bytes, min_side: int | None = None) -> np.ndarray:
    """What Pillow alone decodes: the draft foveal asks for, EXIF turned, as RGB."""
    import math

    from PIL import ImageOps

    image = Image.open(io.BytesIO(data))
    if min_side and max(image.size) > min_side:
        scale = min_side / max(image.size)
        image.draft(image.mode, tuple(max(1, math.ceil(side * scale)) for side in image.size))
    image.load()
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.fixture
def turbo_calls(monkeypatch) -> list[bool]:
    """Whether each JPEG decode took libjpeg-turbo's array path (True) or left it to Pillow (False)."""
    pytest.importorskip("simplejpeg", reason="simplejpeg (a dependency of foveal) is not installed")
    from foveal import imageio

    calls: list[bool] = []
    real = imageio._decode_jpeg_turbo

    def spy(*args):
        pixels = real(*args)
        calls.append(pixels is not None)
        return pixels

    monkeypatch.setattr(imageio, "_decode_jpeg_turbo", spy)
    return calls


def _photo_like(hw=(777, 1001)) -> Image.Image:
    """Smooth gradients and sharp edges at odd sizes, so upsampling, scaling and edge blocks all show."""
    y, x = np.mgrid[0:hw[0], 0:hw[1]]
    rgb = np.stack([(x * 255 // hw[1]), (y * 255 // hw[0]), ((x // 37 + y // 29) % 2) * 200 + 20], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def _jpeg_variants() -> dict[str, bytes]:
    image = _photo_like()
    out = {f"4:{s}{' progressive' if p else ''}": _encode(image, "JPEG", quality=87, subsampling=s, progressive=p)
           for s in (0, 1, 2) for p in (False, True)}
    out["grey"] = _encode(image.convert("L"), "JPEG")
    out["RGB, not YCbCr (Adobe)"] = _encode(image, "JPEG", keep_rgb=True)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out[f"EXIF orientation {orientation}"] = _encode(image, "JPEG", exif=exif.tobytes())
    return out


@pytest.mark.parametrize("min_side", [None, 100, 384])
def test_jpegs_decode_to_pillows_pixels_in_half_the_time(turbo_calls, min_side):
    """Pillow's chunked reads and four-byte pixels cost as much as decoding a JPEG; libjpeg-turbo decoding straight
    into an array must give exactly its pixels, in full and reduced, every subsampling, grey and turned."""
    for name, data in _jpeg_variants().items():
        turbo_calls.clear()
        got = decode(data, min_side=min_side)
        want = _pillow_reference(data, min_side)
        assert turbo_calls == [True], name
        assert got.pixels.shape == want.shape and np.array_equal(got.pixels, want), name
        assert got.image_hw == ((1001, 777) if name[-1] in "5678" and "EXIF" in name else (777, 1001)), name


def test_jpegs_of_other_encoders_decode_to_pillows_pixels(turbo_calls):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (with the detect extra) writes the 4:1:1, 4:4:0 and restart cases")
    bgr = np.asarray(_photo_like())[:, :, ::-1]
    for sampling in ("411", "440", "420", "444"):
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                              getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}"),
                                              cv2.IMWRITE_JPEG_RST_INTERVAL, 7])
        for min_side in (None, 384):
            turbo_calls.clear()
            got = decode(data.tobytes(), min_side=min_side).pixels
            assert turbo_calls == [True] and np.array_equal(got, _pillow_reference(data.tobytes(), min_side))


def test_jpegs_libjpeg_turbo_warns_about_or_cannot_take_are_pillows(turbo_calls, tmp_path):
    """A file libjpeg-turbo warns about goes to Pillow, which may read it anyway; so it has Pillow's pixels, or its
    message, whichever way it comes in."""
    data = _encode(_photo_like(), "JPEG")
    # Two stray bytes before the quantisation table: "extraneous bytes before marker", which Pillow decodes past.
    dqt = data.index(b"\xff\xdb")
    stray = data[:dqt] + b"\x00\x00" + data[dqt:]
    assert np.array_equal(decode(stray).pixels, _pillow_reference(stray)) and turbo_calls == [False]
    cmyk = _encode(_photo_like().convert("CMYK"), "JPEG")  # Pillow's CMYK to RGB, not libjpeg's
    turbo_calls.clear()
    assert np.array_equal(decode(cmyk).pixels, _pillow_reference(cmyk)) and turbo_calls == []
    turbo_calls.clear()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    for source in (path, data[: len(data) // 2]):
        with pytest.raises(ImageError, match="truncated"):
            decode(source)
    assert turbo_calls == [False, False]


def test_dataset_jpegs_decode_to_pillows_pixels(turbo_calls, data_dir):
    paths = sorted((data_dir / "osie" / "stimuli").glob("*.jpg"))[::35] + sorted(
        (data_dir / "scene" / "stimuli").glob("*.jpg"))[::25]  # 20 each; the scene set's sizes vary
    for path in paths:
        data = path.read_bytes()
        for min_side in (None, 384):
            turbo_calls.clear()
            got = decode(path, min_side=min_side).pixels
            assert turbo_calls == [True] and np.array_equal(got, _pillow_reference(data, min_side)), path.name


def _pillow_on_white(rgba: np.ndarray) -> np.ndarray:
    white = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, Image.fromarray(rgba, "RGBA")).convert("RGB"))


@pytest.mark.parametrize("partly_clear", [0.0, 0.02, 0.5, 1.0])  # both ways of working it out
def test_transparency_lies_on_white_as_pillow_composites_it(partly_clear):
    """Composited in NumPy (Pillow's alpha_composite took 30 ms of a 1920x1080 RGBA PNG's 70), with its integers:
    every colour and alpha pair, opaque, clear and partly clear pixels, as a file, an image and an array."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (300, 400, 4), np.uint8)
    rgba[:, :, 3] = 255
    rows = int(300 * partly_clear)
    rgba[:rows, :, 3] = rng.integers(1, 255, (rows, 400))
    rgba[-20:, :, 3] = 0
    colour, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    rgba[:256, :256] = np.stack([colour, 255 - colour, colour // 2 + 64, alpha], axis=-1)  # every pair
    want = _pillow_on_white(rgba)
    for source in (_encode(Image.fromarray(rgba, "RGBA")), Image.fromarray(rgba, "RGBA"), rgba):
        got = load_image(source)
        assert got.flags.c_contiguous and np.array_equal(got, want), type(source).__name__
    opaque = rgba.copy()
    opaque[:, :, 3] = 255
    assert np.array_equal(load_image(opaque), rgba[:, :, :3])


@pytest.mark.parametrize("mode", ["LA", "RGBa", "La", "PA"])
def test_other_transparent_modes_lie_on_white_as_pillow_composites_them(mode):
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (40, 50, 4), np.uint8)
    image = Image.fromarray(rgba, "RGBA").convert(mode)
    straight = image.convert("LA") if mode == "La" else image  # Pillow converts premultiplied grey to LA only
    assert np.array_equal(load_image(image), _pillow_on_white(np.asarray(straight.convert("RGBA"))))



def test_damaged_jpegs_get_pillows_pixels_or_pillows_message(monkeypatch):
    """300 JPEGs with bytes overwritten at random: libjpeg-turbo's array path and Pillow alone agree on every one,
    pixel for pixel or word for word, in full and reduced."""
    pytest.importorskip("simplejpeg", reason="simplejpeg (a dependency of foveal) is not installed")
    from foveal import imageio

    rng = np.random.default_rng(7)
    seeds = [_encode(_photo_like((120, 160)), "JPEG", **kw) for kw in ({}, {"progressive": True}, {"subsampling": 0})]
    fast = imageio._decode_jpeg_turbo

    def outcome(data: bytes, min_side: int | None, turbo) -> object:
        monkeypatch.setattr(imageio, "_decode_jpeg_turbo", turbo)
        try:
            return decode(data, min_side=min_side).pixels
        except ImageError as exc:
            return str(exc)

    taken = 0
    for i in range(300):
        data = bytearray(seeds[i % 3])
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(2, len(data))] = rng.integers(0, 256)
        for min_side in (None, 40):
            ours = outcome(bytes(data), min_side, fast)
            pillows = outcome(bytes(data), min_side, lambda *args: None)
            if isinstance(ours, str) or isinstance(pillows, str):
                assert ours == pillows
            else:
                assert np.array_equal(ours, pillows)
                taken += 1
    assert taken > 100  # most overwritten bytes leave a JPEG both can read


def test_an_int_past_floats_range_is_a_pixel_limit_and_no_blur():
    """max_pixels=2**2000 and blur_sigma=2**2000 escaped as OverflowError from math.isfinite and float()."""
    from foveal.cpu import checked_blur_sigma

    assert load_image(np.zeros((4, 4, 3), np.uint8), max_pixels=2**2000).shape == (4, 4, 3)
    with pytest.raises(InputError, match=r"^blur_sigma must be finite, >= 0 and <= 1000 pixels, got 1148130695"):
        checked_blur_sigma(2**2000)


def test_a_big_endian_16_bit_array_is_read_as_its_values():
    """'>u2' was refused with the advice a.astype(np.uint8), which would have thrown its high bytes away."""
    grey = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    assert np.array_equal(load_image(grey.astype(">u2")), load_image(grey))


def test_min_side_must_be_a_positive_whole_number(rgb):
    """min_side="x" raised TypeError from inside; -5 and True decoded a JPEG at an eighth of its size."""
    data = _encode(Image.fromarray(rgb), "JPEG")
    for value in ("x", -5, 0, True, 2.5):
        with pytest.raises(ImageError, match="^min_side must be a whole number of pixels >= 1"):
            decode(data, min_side=value)
    assert decode(data, min_side=np.int64(8)).image_hw == rgb.shape[:2]


def test_png_metadata_over_pillows_limit_says_what_to_do():
    """A PNG with a 2 MB zTXt chunk was refused with Pillow's internals ("Decompressed data too large for
    PngImagePlugin.MAX_TEXT_CHUNK") and no remedy."""
    import struct
    import zlib

    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    body = b"comment\x00\x00" + zlib.compress(b"a" * (2 << 20))
    text = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    with pytest.raises(ImageError, match=r"^<bytes>: its metadata \(a PNG text or ICC profile chunk\) is larger "
                                         r"than is read here; save the image without it$"):
        load_image(png[:33] + text + png[33:])
