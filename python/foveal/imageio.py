"""Decode: anything a user calls an image → H×W×3 uint8 RGB, upright, alpha composited on white.

Accepts a path, encoded bytes, a PIL image or a uint8/uint16 array. Applies EXIF orientation, converts every Pillow
mode foveal may meet (grey, 16-bit, palette, RGBA, CMYK...), and refuses images over a pixel limit *before*
decoding them, so a decompression bomb costs a header read, not the machine's memory.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from .errors import ImageError

DEFAULT_MAX_PIXELS = 100_000_000

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, "np.ndarray", "PIL.Image.Image", "DecodedImage"]  # noqa: F821


@dataclass(frozen=True)
class DecodedImage:
    """Pixels plus where they came from (sha256 of the encoded file, or of the pixels for in-memory input)."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    sha256: str
    source: str


def load_image(src: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return ``src`` as a C-contiguous (H, W, 3) uint8 RGB array."""
    return decode(src, max_pixels).pixels


def decode(src: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``src`` (path, bytes, PIL image or array) into a :class:`DecodedImage`."""
    from PIL import Image

    if isinstance(src, DecodedImage):
        return src
    if isinstance(src, np.ndarray):
        pixels = _from_array(src, max_pixels)
        return DecodedImage(pixels, hashlib.sha256(pixels).hexdigest(), "<array>")
    if isinstance(src, Image.Image):
        _check_size(src.size, max_pixels, "<PIL image>")
        pixels = _to_rgb(src, "<PIL image>")
        return DecodedImage(pixels, hashlib.sha256(pixels).hexdigest(), "<PIL image>")
    if isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), "<bytes>"
    elif isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        try:
            data = Path(name).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"image not found: {name}") from None
        except IsADirectoryError:
            raise ImageError(f"expected an image file, got a directory: {name}") from None
        except OSError as exc:
            raise ImageError(f"cannot read image {name}: {exc.strerror or exc}") from None
    else:
        raise ImageError(
            f"image: expected a path, bytes, a PIL image or a uint8 array, got {type(src).__name__}"
        )
    if not data:
        raise ImageError(f"{name}: file is empty")
    return DecodedImage(_decode_bytes(data, name, max_pixels), hashlib.sha256(data).hexdigest(), name)


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # foveal enforces its own pixel limit below; Pillow's bomb warning would only duplicate it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            _check_size(image.size, max_pixels, name)
            image.load()
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image format (try PNG, JPEG, WebP, TIFF, BMP or GIF)") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{name}: corrupt or truncated image ({exc})") from None
        except MemoryError:
            raise ImageError(f"{name}: not enough memory to decode this image") from None
        return _to_rgb(image, name)


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of "
            f"{max_pixels / 1e6:.1f} MP; downscale it or raise max_pixels"
        )


def _to_rgb(image: "PIL.Image.Image", name: str) -> np.ndarray:  # noqa: F821
    from PIL import Image, ImageOps

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a readable image unreadable
        pass
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _grey_to_rgb(_high_depth_to_uint8(np.asarray(image), mode))
    mode = image.mode
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageError(f"{name}: cannot convert image mode {mode} to RGB ({exc})") from None
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    if mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0)
        peak = float(values.max(initial=0.0))
        scale = 255.0 if peak <= 1.0 else (1.0 if peak <= 255.0 else 255.0 / 65535.0)
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    # 16-bit greys (PNG, TIFF) use the full 0..65535 range.
    return np.clip((values.astype(np.uint32) + 128) // 257, 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def _from_array(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image array: expected dtype uint8 (or uint16), got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"image array: expected shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    _check_size((array.shape[1], array.shape[0]), max_pixels, "<array>")
    if array.dtype == np.uint16:
        array = _high_depth_to_uint8(array, "I;16")
    if array.shape[2] == 1:
        return _grey_to_rgb(array[:, :, 0])
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.uint16)
        rgb = (array[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(rgb.astype(np.uint8))
    return np.ascontiguousarray(array)
