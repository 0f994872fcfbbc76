"""Bytes in, bytes out: images and element files from HTTP requests, maps as PNG / ``.npy`` / grid / overlay.

Nothing here fetches a URL: images arrive as bytes in the request (raw body or multipart upload) or not at all.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from email.message import Message
from typing import Any, Collection

import numpy as np
# Starlette imports its form parser only when a form arrives; imported here, a server without it fails at start
# with the serve extra's hint instead of answering every upload 400 as if the client's body were malformed.
import python_multipart  # noqa: F401
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from .. import cpu
from ..errors import ImageError, InputError, ServiceError
from ..fileio import encode_png
from ..saliency_map import SaliencyMap

#: Raw request bodies /v1/predict accepts besides multipart uploads.
RAW_IMAGE_TYPES = ("image/", "application/octet-stream")
MAX_GRID_CELLS = 256 * 256


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def unsupported(request: Request, expected: str) -> ServiceError:
    got = media_type(request) or "none"
    return ServiceError(f"Content-Type {got} is not accepted here; send {expected}", status=415,
                        code="unsupported_media_type")


@dataclass(frozen=True)
class Form:
    """A multipart body read whole: uploaded files as ``(bytes, filename)``, plain fields as text."""

    files: dict[str, tuple[bytes, str]]
    fields: dict[str, str]

    def file(self, name: str) -> tuple[bytes, str]:
        """The bytes and filename of a required file field (a plain field is taken as its bytes)."""
        if name in self.files:
            data, filename = self.files[name]
        elif name in self.fields:
            data, filename = _field_bytes(self.fields[name]), name
        else:
            raise InputError(f"multipart field {name!r} is missing; attach the image as a file field {name!r}")
        if not data:
            raise ImageError(f"multipart field {name!r} is empty; attach the image's bytes")
        return data, filename

    def text(self, name: str, *, required: bool = False) -> str | None:
        """A field as text, whether sent as a plain field or an uploaded file."""
        if name in self.fields:
            return self.fields[name]
        if name in self.files:
            try:
                return self.files[name][0].decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"multipart field {name!r} is not UTF-8 text") from None
        if required:
            raise InputError(f"multipart field {name!r} is missing")
        return None


def _field_bytes(text: str) -> bytes:
    """The bytes sent as a plain (filename-less) multipart field.  Starlette decodes such a field as UTF-8, or as
    Latin-1 (one character per byte) when it is not valid UTF-8; an image never is (PNG's and JPEG's first bytes
    are not), so encoding its text as Latin-1 gives back exactly the bytes sent.  Text with characters beyond
    Latin-1 can only have been UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


async def form_of(request: Request, expected: str, names: Collection[str]) -> Form:
    """The request's multipart form, read whole and its temporary files closed; 415 for other content types, and
    400 for a field not in ``names``."""
    if media_type(request) != "multipart/form-data":
        raise unsupported(request, expected)
    # Read first, outside the parser's error handling: a client that leaves mid-body is gone (499), not malformed.
    body = await request.body()
    boundary = _boundary(request)
    if boundary and b"--" + boundary + b"--" not in body:  # the parser drops an unfinished part without a word
        if not body:
            raise InputError("the multipart body is empty; send the form's fields")
        if b"--" + boundary not in body:  # no part at all: not cut short, delimited by another boundary
            raise InputError(f"the multipart body has no part delimited by the boundary its Content-Type names "
                             f"({boundary.decode('latin-1')[:70]!r}); send the body with the boundary of its header")
        raise InputError("the multipart body ends before its closing boundary: it was cut short; send the whole "
                         "body")
    try:
        # A plain (filename-less) part may hold the image: bounded by the body, which the guard bounds, and not
        # by a size of its own (16 MiB refused a 20 MB image under the 32 MiB body limit as malformed)
        form = await request.form(max_files=8, max_fields=32, max_part_size=max(1, len(body)))
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - the multipart parser's own errors are the client's malformed body
        raise InputError(_multipart_error(exc)) from None
    try:
        files, fields = {}, {}
        for name, value in form.multi_items():
            if name not in names:  # a misspelt 'norm' or 'pass_percentle' would otherwise be ignored without a word
                raise InputError(f"multipart field {name!r} is not one {request.url.path} takes; send only "
                                 f"{', '.join(sorted(names))}")
            if name in files or name in fields:  # else the last one would silently win
                raise InputError(f"multipart field {name!r} is sent more than once; send each field once (one "
                                 "image per request, one request per image)")
            if isinstance(value, UploadFile):
                files[name] = (await value.read(), value.filename or name)
            else:
                fields[name] = value
        return Form(files, fields)
    finally:
        await form.close()


def _boundary(request: Request) -> bytes:
    """The multipart boundary the Content-Type names (empty if none: the parser reports that)."""
    header = Message()
    header["content-type"] = request.headers.get("content-type", "")
    boundary = header.get_param("boundary")
    return boundary.encode("latin-1", "replace") if isinstance(boundary, str) else b""


def _multipart_error(exc: BaseException) -> str:
    """What is wrong with a multipart body, from the parser's own reason: Starlette reports every parse error as
    'Invalid multipart data.', with the parser's exception as its cause (and the request turns that into an
    HTTPException)."""
    from starlette.formparsers import MultiPartException

    found: BaseException | None = exc
    while found is not None and not isinstance(found, MultiPartException):
        found = found.__cause__ or found.__context__
    reason = str(exc if found is None else found.__cause__ or found).rstrip(".")
    if "header size" in reason.lower():  # python-multipart's limit on a part's header line (4 KiB)
        return (f"multipart body: a part's header is too long ({reason}), most likely its file name; give the file a "
                "shorter name (a few hundred characters at most)")
    return f"malformed multipart body ({reason}); send multipart/form-data"


async def image_bytes(request: Request) -> tuple[bytes, str]:
    """The image of a /v1/predict request: a raw ``image/*`` body or the multipart field ``image``."""
    kind = media_type(request)
    if kind.startswith(RAW_IMAGE_TYPES[0]) or kind == RAW_IMAGE_TYPES[1]:
        data = await request.body()
        if not data:
            raise ImageError("the request body is empty; send the image's bytes")
        return data, "<body>"
    form = await form_of(request, "the image as a raw image/* body or a multipart/form-data field 'image'", ("image",))
    return form.file("image")


def png16(smap: SaliencyMap) -> tuple[bytes, float]:
    """The map as a 16-bit greyscale PNG and the scale turning its values back into probabilities."""
    quantised, scale = cpu.quantize(smap.prob, 16)
    return encode_png(quantised, {"foveal:scale": repr(float(scale))}), float(scale)


class NpyResponse(Response):
    """A map as a float32 ``.npy`` body (header, then the C-order data), sent from the map's own memory: no copy of
    its megabytes is made per request."""

    media_type = "application/x-npy"

    def __init__(self, prob: np.ndarray, headers: dict[str, str]) -> None:
        prob = np.ascontiguousarray(prob, dtype=np.float32)
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(prob))
        self._chunks = (buf.getvalue(), memoryview(prob).cast("B"))
        super().__init__(headers={**headers, "content-length": str(sum(map(len, self._chunks)))})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._chunks[0], "more_body": True})
        await send({"type": "http.response.body", "body": self._chunks[1]})


class JSONDocument(Response):
    """A JSON answer serialised by orjson: the same JSON as the standard library's, 20x faster on numbers (a 32x24
    grid: 40 us against 0.9 ms, more than the rest of a quick /v1/predict)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        import orjson

        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def parse_grid(text: str) -> tuple[int, int]:
    """``"32x24"`` → (cols, rows)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in parts) \
            or min(int(p) for p in parts) < 1:
        raise InputError(f"grid: expected COLSxROWS with whole numbers from 1 to 999999999 (e.g. 32x24), got {text!r}")
    return int(parts[0]), int(parts[1])


def grid(smap: SaliencyMap, cols: int, rows: int) -> dict[str, Any]:
    """The map's mass summed into ``rows x cols`` cells (rows top to bottom; cut to one cell per pixel at most),
    from the summed-area table: cell edges fall on whole pixels, row edge ``i`` at ``floor(i * H / rows + 1/2)``
    computed in integers (so any language gets the same cells), and the values sum to the map's total, 1."""
    height, width = smap.shape
    rows, cols = min(rows, height), min(cols, width)
    if rows * cols > MAX_GRID_CELLS:
        raise InputError(f"grid: {cols}x{rows} cells (cut to the image's {width}x{height} pixels) is over the limit of "
                         f"{MAX_GRID_CELLS}; ask for a coarser grid")
    ys = (2 * np.arange(rows + 1, dtype=np.int64) * height + rows) // (2 * rows)
    xs = (2 * np.arange(cols + 1, dtype=np.int64) * width + cols) // (2 * cols)
    corners = smap.sat[np.ix_(ys, xs)]
    cells = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    return {"rows": rows, "cols": cols, "values": cells.tolist()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
