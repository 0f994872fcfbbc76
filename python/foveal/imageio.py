"""Decode: anything a user calls an image → H×W×3 uint8 RGB, upright, alpha composited on white.

Accepts a path, encoded bytes, a PIL image or a uint8/uint16 array (uint16: 16-bit values, 0..65535). Applies
EXIF orientation, converts every Pillow mode foveal may meet (grey, 16-bit, palette, RGBA, CMYK...), and refuses
images over a pixel limit *before* decoding them, so a decompression bomb costs a header read, not the machine's
memory. Files are read as a stream (header first) from regular files only, with a size limit that follows the pixel
limit: a FIFO, a device or a huge file that is not an image is refused without being read whole.
"""
from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import numpy as np

from .errors import ImageError, TooManyPixelsError
from .fileio import open_input, stream_sha256

if TYPE_CHECKING:  # for ImageLike's hint only: Pillow is imported where an image is decoded
    import PIL.Image

DEFAULT_MAX_PIXELS = 100_000_000
#: The encoded formats foveal reads, by Pillow's names (its JPEG opener also takes a camera's MPO, a JPEG holding a
#: second picture). Pillow would open dozens more, among them ICO, whose header states a 16x16 icon over a PNG of
#: any size (so the pixel limit cannot be checked before decoding), and EPS, which it hands to Ghostscript.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
#: What the images of a folder end with (any case): those FORMATS. ``.jfif`` and ``.jpe`` are JPEGs too: browsers on
#: Windows save web images as ``.jfif``, which a folder run skipped without a word.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: How the files of FORMATS other than JPEG (told apart from its frame, :func:`_jpeg_frame`) begin.
_SIGNATURES = (("PNG", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
               ("GIF", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
               ("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
               ("TIFF", lambda h: h[:4] in (b"II*\0", b"MM\0*")),
               ("BMP", lambda h: h[:2] == b"BM" and h[6:10] == b"\0\0\0\0"))  # text may start "BM"
_PILLOW_LIMIT_LOCK = threading.Lock()

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, "np.ndarray", "PIL.Image.Image", "DecodedImage"]


@dataclass(frozen=True)
class DecodedImage:
    """Pixels plus where they came from (sha256 of the encoded file, or of the pixels for in-memory input).

    ``image_hw`` is the image's full (height, width), upright. It equals ``pixels.shape[:2]`` unless the image was
    decoded reduced (``decode(..., min_side=...)``), when ``pixels`` is a smaller rendering of the same image.
    """

    pixels: np.ndarray  # (h, w, 3) uint8 RGB
    sha256: str
    source: str
    image_hw: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        pixels = self.pixels
        if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3
                and pixels.shape[2] == 3 and pixels.size):
            got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise ImageError(f"DecodedImage.pixels: expected a non-empty (H, W, 3) uint8 RGB array, got {got}")
        if not (isinstance(self.sha256, str) and isinstance(self.source, str)):
            raise ImageError("DecodedImage: sha256 and source must be strings")
        if not pixels.flags.c_contiguous:  # the kernels read rows in place
            object.__setattr__(self, "pixels", np.ascontiguousarray(pixels))
        if tuple(self.image_hw) == (0, 0):
            object.__setattr__(self, "image_hw", tuple(pixels.shape[:2]))
        hw = tuple(self.image_hw)
        if not (len(hw) == 2 and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in hw)
                and hw[0] >= pixels.shape[0] and hw[1] >= pixels.shape[1]):
            raise ImageError(f"DecodedImage.image_hw: expected whole numbers (height, width) at least the pixels' "
                             f"{pixels.shape[:2]}, got {self.image_hw!r}")
        object.__setattr__(self, "image_hw", (int(hw[0]), int(hw[1])))

    @property
    def reduced(self) -> bool:
        """Whether ``pixels`` is smaller than the image."""
        return tuple(self.pixels.shape[:2]) != self.image_hw


def load_image(src: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return ``src`` as a C-contiguous (H, W, 3) uint8 RGB array."""
    return decode(src, max_pixels).pixels


def checked_max_pixels(value: object) -> int:
    """``value`` as a pixel limit (a finite number >= 1; 5e8 is fine), else ImageError naming ``max_pixels``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ImageError(f"max_pixels must be a finite number >= 1, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int past float's range: finite, and no image comes near it
        finite = True
    if not (finite and value >= 1):
        raise ImageError(f"max_pixels must be a finite number >= 1, got {value!r}")
    return int(value)


def decode(src: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS, *, min_side: int | None = None) -> DecodedImage:
    """Decode ``src`` (path, bytes, PIL image or array) into a :class:`DecodedImage`.

    ``min_side``: the caller only needs the image at ``min_side`` pixels on its longest side, so an encoded JPEG is
    decoded at the largest DCT-domain reduction (1/2, 1/4 or 1/8, Pillow's ``draft``) that keeps its longest side
    at least ``min_side``; ``image_hw`` stays the full size. Other formats and in-memory images decode whole.
    """
    from PIL import Image

    max_pixels = checked_max_pixels(max_pixels)
    if min_side is not None and (isinstance(min_side, bool) or not isinstance(min_side, numbers.Integral)
                                 or min_side < 1):  # "x" failed inside; -5 decoded at an eighth of the size
        raise ImageError(f"min_side must be a whole number of pixels >= 1, got {min_side!r:.40}")

    if isinstance(src, DecodedImage):
        _check_size(src.image_hw[::-1], max_pixels, src.source)  # image_hw is the size the map will have
        return src
    if isinstance(src, np.ndarray):
        if isinstance(src, np.ma.MaskedArray) and np.ma.getmaskarray(src).any():  # asarray would read what is hidden
            raise ImageError("image array: the masked array has masked pixels; fill them first (a.filled(255) for "
                             "white)")
        pixels = _from_array(np.asarray(src), max_pixels)  # a subclass (np.matrix) as the plain array it holds
        return DecodedImage(pixels, hashlib.sha256(pixels).hexdigest(), "<array>")
    if isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, "<PIL image>")
        pixels = _to_rgb(src, "<PIL image>")
        return DecodedImage(pixels, hashlib.sha256(pixels).hexdigest(), "<PIL image>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = _nonempty(src)
        try:
            pixels, image_hw = _decode_stream(io.BytesIO(data), "<bytes>", max_pixels, min_side)
        except ImageError:
            if len(data) <= 4096 and os.path.isfile(data):  # a path as bytes (os.listdir(b"."), os.fsencode)
                raise ImageError("<bytes>: these bytes name a file, but bytes are an image's contents; pass the "
                                 "path as text: os.fsdecode(path)") from None
            raise
        return DecodedImage(pixels, hashlib.sha256(data).hexdigest(), "<bytes>", image_hw)
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        with open_input(name, max_file_bytes(max_pixels), "image file", ImageError) as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(f"{name}: file is empty")
            pixels, image_hw = _decode_stream(fh, name, max_pixels, min_side)
            fh.seek(0)
            sha256 = stream_sha256(fh)
        return DecodedImage(pixels, sha256, name, image_hw)
    raise ImageError(f"image: expected a path, bytes, a PIL image or a uint8 array, got {type(src).__name__}"
                     + _how_to_pass(src))


def _how_to_pass(src: Any) -> str:
    """What to do with an image held in a type foveal does not take: a file object, a tensor or other array-like."""
    if callable(getattr(src, "read", None)):
        return "; pass its contents: image.read()"
    if hasattr(src, "__array__") or hasattr(src, "__array_interface__"):
        torch = type(src).__module__.startswith("torch")
        return "; pass it as a NumPy array: " + ("image.cpu().numpy()" if torch else "np.asarray(image)")
    return ""


def check_header(data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS,
                 name: str = "<bytes>") -> None:
    """Refuse encoded ``data`` (called ``name`` in messages) from its header alone, before any pixel is decoded:
    ImageError when it is no image foveal reads, TooManyPixelsError when it is over ``max_pixels``."""
    with open_pillow(io.BytesIO(_nonempty(data)), name, checked_max_pixels(max_pixels)):
        pass


def _nonempty(data: bytes | bytearray | memoryview) -> bytes:
    data = bytes(data)
    if not data:
        raise ImageError("<bytes>: no data (empty image)")
    return data


def max_file_bytes(max_pixels: int) -> int:
    """Largest encoded file accepted for a pixel limit: 8 bytes a pixel (uncompressed 16-bit RGBA) plus 16 MiB of
    metadata, so a huge file that is no image is refused from its size, before it is read."""
    return 8 * int(max_pixels) + (16 << 20)


def open_pillow(fh: BinaryIO, name: str, max_pixels: int) -> "PIL.Image.Image":  # noqa: F821
    """``Image.open`` on a binary stream with foveal's pixel limit checked from the header, before any decoding.

    Pillow refuses images over twice its own process-wide ``Image.MAX_IMAGE_PIXELS`` (179 MP by default) even when
    foveal was told to accept them; a ``max_pixels`` above that limit raises it (never lowers it) to ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    allow_in_pillow(max_pixels)
    # No warnings.catch_warnings() here: it swaps the process-wide filter list and races other threads. With
    # Pillow's limit at least max_pixels, its bomb warning only fires for images refused just below anyway.
    try:
        # Registers the openers of FORMATS (Image.open(formats=...) looks each name up): 2 ms the first time, where
        # Image.init() imports all of Pillow's plugins, 16 ms, for formats refused anyway.
        from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin  # noqa: F401
        from PIL import WebPImagePlugin  # noqa: F401

        image = Image.open(fh, formats=FORMATS)
    except UnidentifiedImageError:
        frame = _jpeg_frame(fh)
        if frame is not None:
            raise ImageError(f"{name}: a JPEG that cannot be decoded here ({frame}); save it as an ordinary 8-bit "
                             "JPEG or as PNG") from None
        fh.seek(0)
        head = fh.read(12)
        if head[:3] == b"\xff\xd8\xff":
            raise ImageError(f"{name}: a corrupt or truncated JPEG; send the whole file, or save it again") from None
        kind = next((kind for kind, test in _SIGNATURES if test(head)), None)
        if kind is not None:  # one of the six, whose header Pillow refused (a zero width, a damaged chunk)
            raise ImageError(f"{name}: a {kind} whose header cannot be read (damaged, or an image of no pixels); "
                             "save it again") from None
        raise ImageError(f"{name}: not a recognised image format (try PNG, JPEG, WebP, TIFF, BMP or GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning: where warnings are errors
        # Pillow's limit is at least max_pixels (above), so Pillow refusing it means it is over foveal's limit too.
        detail, limit = "too large by its header", pixel_count(max_pixels)
        raise TooManyPixelsError(f"{name}: {detail}, over the limit of {limit}; downscale it or raise max_pixels",
                                 detail=detail, limit=max_pixels, limit_text=limit) from None
    except Exception as exc:  # noqa: BLE001 - plugins raise OSError, SyntaxError, NotImplementedError, struct.error...
        raise _undecodable(name, exc) from None
    _check_size(image.size, max_pixels, name)
    return image


def _undecodable(name: str, exc: Exception) -> ImageError:
    """The error for an image Pillow could not read, with what to do."""
    if "MAX_TEXT_CHUNK" in str(exc) or "MAX_TEXT_MEMORY" in str(exc):  # Pillow's limit on PNG metadata
        return ImageError(f"{name}: its metadata (a PNG text or ICC profile chunk) is larger than is read here; "
                          "save the image without it")
    return ImageError(f"{name}: corrupt, truncated or unsupported image ({type(exc).__name__}: {exc}); save it again "
                      "as PNG or JPEG")


def _jpeg_frame(fh: BinaryIO) -> str | None:
    """Why Pillow cannot open the JPEG in ``fh``, from its frame header: ``"12-bit samples"`` (Pillow takes 8-bit
    JPEGs only); None when ``fh`` holds no JPEG, or its frame is an 8-bit one, or none is found (it is damaged).
    Segments are skipped by their lengths, so an ICC profile of any size before the frame is no obstacle."""
    fh.seek(0)
    if fh.read(2) != b"\xff\xd8":
        return None
    for _ in range(1 << 16):  # a bound on segments, so no file can keep this loop going
        byte = fh.read(1)
        if byte != b"\xff":
            return None
        while byte == b"\xff":  # fill bytes may precede a marker (T.81 B.1.1.2)
            byte = fh.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            continue
        size = fh.read(2)
        if marker in (0xD9, 0xDA) or len(size) < 2:  # the image's end or its scan, and no frame before: damaged
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            precision = fh.read(1)
            return None if not precision or precision[0] == 8 else f"{precision[0]}-bit samples"
        length = int.from_bytes(size, "big")  # counts its own two bytes
        if length < 2:
            return None
        fh.seek(length - 2, os.SEEK_CUR)
    return None


def allow_in_pillow(max_pixels: int) -> None:
    """Raise Pillow's process-wide bomb limit to ``max_pixels`` if it is lower (never lowers it)."""
    from PIL import Image

    with _PILLOW_LIMIT_LOCK:
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _decode_stream(fh: BinaryIO, name: str, max_pixels: int,
                   min_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels (reduced when ``min_side`` allows, see :func:`decode`) and the image's full upright (height, width)."""
    from PIL import Image

    image = open_pillow(fh, name, max_pixels)
    if getattr(image, "default_image", False) and getattr(image, "n_frames", 1) > 1:
        # An APNG whose default image is not part of the animation: browsers show its first frame, Pillow's frame 0
        # is the default image (for viewers that do not animate).
        try:
            image.seek(1)
        except Exception as exc:  # noqa: BLE001 - as in open_pillow: any decoder failure is the image's
            raise _undecodable(name, exc) from None
    width, height = image.size
    key = _colour_key(image)  # before load, which forgets the PNG's bit depth
    factor = 1
    if min_side is not None and image.format == "JPEG":
        # draft keeps each side >= the requested one; asking for the longest side scaled to min_side (rounded up)
        # keeps the longest side >= min_side whatever the EXIF rotation, since both sides shrink by one factor.
        longest = max(image.size)
        if longest > min_side:
            scale = min_side / longest
            drafted = image.draft(image.mode, tuple(max(1, math.ceil(side * scale)) for side in image.size))
            factor = round(width / drafted[1][2]) if drafted else 1
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        fh.seek(0)
        orientation = _orientation(image)
        pixels = _decode_jpeg_turbo(fh.read(), image.mode, image.size, factor, orientation)
        if pixels is not None:
            return pixels, ((width, height) if orientation in (5, 6, 7, 8) else (height, width))
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001 - as in open_pillow: any decoder failure is the image's
        raise _undecodable(name, exc) from None
    # Asked of the EXIF tag, not of the decoded axes: a reduced decode of a near-square image can be square.
    image, turned = _upright(image)
    pixels = _to_rgb(image, name, upright=True, key=key)
    return pixels, ((width, height) if turned else (height, width))


#: Pillow's modes of grey samples wider than a byte ("F", floats, is handled beside them).
_INTEGER_GREYS = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _colour_key(image: "PIL.Image.Image") -> Any:  # noqa: F821
    """The tRNS colour key of a grey or RGB ``image`` in its decoded values, or None. A PNG's key is a raw sample,
    and Pillow scales 1-, 2- and 4-bit greys to 0..255 but not their key; their depth is known only until load."""
    key = image.info.get("transparency")
    if image.mode not in ("1", "L", "RGB", *_INTEGER_GREYS) or key is None:
        return None
    depth = image.tile[0][3] if image.format == "PNG" and image.tile else None
    if depth == "RGB;16B" and isinstance(key, tuple):
        # Pillow reads a 16-bit RGB PNG as its samples' high bytes but hands its key over as 16-bit samples; only
        # the high bytes can be compared (a colour within 1/256 of the key's goes with it).
        return tuple(int(k) >> 8 for k in key)
    scale = {"1": 255, "L;1": 255, "L;2": 85, "L;4": 17}.get(depth if isinstance(depth, str) else "")
    return key * scale if scale and isinstance(key, int) else key


def pixel_count(n: int) -> str:
    """``n`` pixels for a message: megapixels, or the count itself where one decimal of a megapixel says 0.0."""
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n:,} pixels"


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        count, limit = pixel_count(width * height), pixel_count(max_pixels)
        if count == limit:  # 100,010,000 over 100,000,000 is no news as "100.0 MP over 100.0 MP"
            count, limit = f"{width * height:,} pixels", f"{max_pixels:,}"
        detail = f"{width}x{height} = {count}"
        raise TooManyPixelsError(f"{name}: {detail}, over the limit of {limit}; downscale it or raise max_pixels",
                                 detail=detail, limit=max_pixels, limit_text=limit)


def _orientation(image: "PIL.Image.Image") -> int:  # noqa: F821
    """``image``'s EXIF orientation (1-8); 1, upright, where it has none or a broken one. Only a real EXIF block
    (JPEG APP1, PNG eXIf, WebP EXIF) or a TIFF's own tag counts: Pillow's getexif also takes XMP's tiff:Orientation
    and ImageMagick's "Raw profile type exif" text, which browsers ignore, and turned those images."""
    from PIL import Image

    try:
        block = image.info.get("exif")
        if block is not None:
            exif = Image.Exif()
            exif.load(block)
            orientation = exif.get(0x0112)
        else:
            orientation = getattr(image, "tag_v2", {}).get(0x0112)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a readable image unreadable
        return 1
    return orientation if orientation in (2, 3, 4, 5, 6, 7, 8) else 1


def _upright(image: "PIL.Image.Image") -> tuple["PIL.Image.Image", bool]:  # noqa: F821
    """``image`` turned as its EXIF orientation says (as a browser shows it), and whether its axes were swapped."""
    from PIL import ImageOps

    orientation = _orientation(image)
    if orientation == 1:  # upright already: exif_transpose would copy it
        return image, False
    try:
        return ImageOps.exif_transpose(image), orientation in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - as in _orientation
        return image, False


# EXIF orientation → the (H, W, C) view that shows it upright, as ImageOps.exif_transpose turns it.
_TURNS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}


def _decode_jpeg_turbo(data: bytes, mode: str, size: tuple[int, int], factor: int,
                       orientation: int) -> np.ndarray | None:
    """An RGB or grey JPEG's upright RGB pixels decoded by libjpeg-turbo straight into an array (simplejpeg), the
    same pixels Pillow decodes in half the time: Pillow's chunked reads, its four-byte pixels and their repacking
    cost as much as the decoding (1920x1080: 5 ms against 10). ``size`` is Pillow's (width, height) of the decode,
    reduced by ``factor`` (its ``draft``). None, for Pillow to decode, without simplejpeg or where libjpeg-turbo
    warns (strict): a damaged file then gets Pillow's pixels or message."""
    try:
        import simplejpeg
    except ImportError:
        return None
    width, height = size
    try:
        pixels = simplejpeg.decode_jpeg(data, "GRAY" if mode == "L" else "RGB", min_height=height,
                                        min_width=width, min_factor=factor, strict=True)
    except Exception:  # noqa: BLE001 - ValueError for damage, others for what it cannot decode: Pillow decides
        return None
    if pixels.shape[:2] != (height, width):  # another scale than draft's: its pixels are not Pillow's
        return None
    if mode == "L":
        pixels = _grey_to_rgb(pixels[:, :, 0])
    return np.ascontiguousarray(_TURNS[orientation](pixels)) if orientation != 1 else pixels


def _to_rgb(image: "PIL.Image.Image", name: str, *, upright: bool = False,  # noqa: F821
            key: Any = None) -> np.ndarray:
    """RGB pixels as a browser shows ``image``: EXIF-turned (unless already ``upright``), transparency on white.
    ``key``: its colour key (:func:`_colour_key`), found here when not given."""
    if key is None:
        key = _colour_key(image)
    if not upright:
        image, _ = _upright(image)
    mode = image.mode
    try:  # a closed image, a lazily read truncated file, a mode Pillow cannot convert
        if key is not None and mode in ("1", "L", "RGB"):  # a colour key: its pixels are the white beneath
            values = np.asarray(image.convert("L") if mode == "1" else image)
            pixels = _rgb_array(image.convert("RGB") if mode != "RGB" else image)  # a new array: written below
            pixels[(values == key).all(axis=-1) if mode == "RGB" else values == key] = 255
            return pixels
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode == "PA":
            image = image.convert("RGBA")
        elif mode == "La":  # Pillow converts premultiplied grey to LA only
            image = image.convert("LA")
        elif mode in (*_INTEGER_GREYS, "F"):
            values = np.asarray(image)
            grey = _high_depth_to_uint8(values, mode, name)
            if isinstance(key, int):
                grey[values == key] = 255  # transparent: the white a browser shows beneath
            return _grey_to_rgb(grey)
        if image.mode in ("RGBA", "LA", "RGBa", "La"):
            return _on_white(image if image.mode == "RGBA" else image.convert("RGBA"))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return _rgb_array(image)
    except ImageError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageError(f"{name}: cannot read this {mode} image ({exc})") from None


def _exported(image: "PIL.Image.Image") -> np.ndarray | None:  # noqa: F821
    """An RGB or RGBA image's pixels as Pillow holds them, four bytes each (for RGB the fourth is padding): an (H, W,
    4) uint8 view of Pillow's memory, from its Arrow export (Pillow 11.2+); None where it cannot export them (images
    it holds in several blocks of about 16 MiB). ``np.asarray`` goes through ``tobytes``, which for RGB repacks the
    pixels to three bytes (4 ms for 1920x1080)."""
    if not hasattr(image, "__arrow_c_array__"):
        return None
    import pyarrow as pa

    try:
        # Not pa.array(image) nor .to_numpy(): on first use both import pandas inside Cython code that swallows a
        # KeyboardInterrupt, so a Ctrl-C during a command's first decode was lost (exit 0).
        # _import_from_c_capsule is pyarrow's (14+) reader of the C data interface; without it, the slow way.
        channels = pa.Array._import_from_c_capsule(*image.__arrow_c_array__()).flatten()
    except (ValueError, TypeError, AttributeError, pa.ArrowException):
        return None
    pixels = np.frombuffer(channels.buffers()[1], np.uint8, count=len(channels), offset=channels.offset)
    return pixels.reshape(image.height, image.width, 4)


def _rgb_array(image: "PIL.Image.Image") -> np.ndarray:  # noqa: F821
    """An RGB or RGBA image's colours as a new C-contiguous (H, W, 3) uint8 array."""
    pixels = _exported(image)
    if pixels is not None:
        return _channels3(pixels)
    return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def _channels3(pixels: np.ndarray) -> np.ndarray:
    """The first three channels of (H, W, C) uint8 pixels as a new C-contiguous array: a copy per channel (1.9 ms
    for 1920x1080; one strided copy of all three took 6.7)."""
    rgb = np.empty((*pixels.shape[:2], 3), np.uint8)
    for c in range(3):
        rgb[:, :, c] = pixels[:, :, c]
    return rgb


def _on_white(rgba: "np.ndarray | PIL.Image.Image") -> np.ndarray:  # noqa: F821
    """RGBA pixels ((H, W, 4) uint8, or an RGBA image) composited on white as Pillow's ``alpha_composite`` does it
    ((c·a + 255·(255 − a) + 127) // 255 for every colour and alpha pair), into a new (H, W, 3) array. The composite
    is handed over as Pillow holds it and copied a channel at a time (11 ms at 1920x1080, where converting to RGB
    and repacking took 19, and the same integers in 16-bit NumPy 14); an opaque image is only copied (3 ms)."""
    from PIL import Image

    pixels = rgba if isinstance(rgba, np.ndarray) else _exported(rgba)
    if pixels is not None and pixels[:, :, 3].min() == 255:
        return _channels3(pixels)
    if isinstance(rgba, np.ndarray):
        rgba = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    composite = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return _rgb_array(composite)


def _high_depth_to_uint8(values: np.ndarray, mode: str, name: str) -> np.ndarray:
    if mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: this floating-point image holds NaN or infinite values, which have no "
                             "brightness; save it as an 8- or 16-bit image")
        peak = float(values.max(initial=0.0))
        scale = 255.0 if peak <= 1.0 else (1.0 if peak <= 255.0 else 255.0 / 65535.0)
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    if values.dtype.kind == "i" and values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(f"{name}: this 32-bit integer image holds values outside 0..65535, whose brightness is "
                         "unknown; save it as an 8- or 16-bit image")
    if mode == "I" and values.size and values.max() <= 255:
        # Pillow's 32-bit mode declares no range, and convert("I") of an 8-bit image keeps its 0..255: read at
        # 16 bits those would be near black (mode F is read by its peak the same way).
        return values.astype(np.uint8)
    # 16-bit greys (PNG, TIFF) use the full 0..65535 range.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _from_array(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.dtype.kind == "u" and array.dtype.itemsize == 2 and not array.dtype.isnative:
        array = array.astype(np.uint16)  # big-endian 16-bit (a FITS or TIFF reader's): the same values, swapped
    if array.dtype not in (np.uint8, np.uint16):
        # Whether floats run 0..1 or 0..255 cannot be told from the values of every image, so none is guessed.
        how = ("(a * 255).round().astype(np.uint8) for values in 0..1, a.round().astype(np.uint8) for 0..255"
               if array.dtype.kind == "f" else "a.astype(np.uint8) for values in 0..255")
        raise ImageError(f"image array: expected dtype uint8 (or uint16), got {array.dtype}; convert it: {how}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        chw = array.ndim == 3 and array.shape[0] in (1, 3, 4)  # channels first, as torch keeps them
        raise ImageError(f"image array: expected shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}"
                         + ("; channels go last: a.transpose(1, 2, 0)" if chw else ""))
    _check_size((array.shape[1], array.shape[0]), max_pixels, "<array>")
    if array.dtype == np.uint16:
        colour = array[:, :, :3] if array.shape[2] == 4 else array
        if 0 < colour.max() <= 255:
            raise ImageError("image array: a uint16 array holds 16-bit values (0..65535), and every value of this "
                             "one is in 0..255, which would show near black; pass 8-bit values as "
                             "a.astype(np.uint8), or 16-bit ones scaled to 0..65535")
        array = _high_depth_to_uint8(array, "I;16", "<array>")
    if array.shape[2] == 1:
        return _grey_to_rgb(array[:, :, 0])
    if array.shape[2] == 4:
        return _on_white(array)
    return np.ascontiguousarray(array)
