"""``foveal.Client``: the foveal service over HTTP, with the same return types as in-process :class:`Engine`.

>>> engine = foveal.Client("http://127.0.0.1:8080")     # instead of foveal.Engine()
>>> smap = engine.predict("creative.png")                # a SaliencyMap, the exact float32 map of the service
>>> doc = engine.score("creative.png", "creative.json")  # the scores.json document `foveal score` writes
>>> page = engine.score("creative.png", "creative.json", output="html")  # its report.html, as bytes
>>> engine.detect("creative.png")                        # [Element(...)], as foveal.detect_elements returns

Errors come back as the :class:`FovealError` subclass the service raised (``ImageError``, ``ElementSpecError``,
``InputError``, ``DetectorUnavailableError``...) with its message; refusals (overload, deadline, auth) and transport
failures are :class:`ServiceError` with ``status`` and ``code``.  Needs ``httpx`` (the ``serve`` extra).
"""
from __future__ import annotations

import contextlib
import datetime
import decimal
import functools
import io
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence, overload
from urllib.parse import urlsplit

import numpy as np

from .engine import image_list, raise_first_error
from .errors import (BackendUnavailableError, DetectorUnavailableError, ElementSpecError, FormatMismatchError,
                     FovealError, ImageError, InputError, ModelError, ServiceError, TooManyPixelsError, checked_count,
                     checked_flag, is_list_like, real_number)
from .fileio import json_default, read_input
from .imageio import DEFAULT_MAX_PIXELS, ImageLike, check_header, max_file_bytes
from .saliency_map import SaliencyMap
from .scoring.elements import Element

#: ``X-Deadline-Ms`` from this far on (about 31 years) is no deadline, and beyond what a monotonic clock adds
#: exactly: the service refuses it, and the client does not send it.
MAX_DEADLINE_MS = 1e12

#: Longest wait :attr:`ServiceError.retry_after` reports: a proxy's hint of hours is no reason for a caller to sleep
#: that long (and a date far ahead is more likely a wrong clock).
MAX_RETRY_AFTER_S = 3600.0
#: The largest answer read: a 100 MP map as .npy is 400 MB; a server sending more is not a foveal service.
MAX_ANSWER_BYTES = 1 << 30
_ANY_SIZE = 1 << 50  # a header check of the format alone

_ERRORS: dict[str, type[FovealError]] = {
    "invalid_image": ImageError, "invalid_elements": ElementSpecError, "invalid_input": InputError,
    "format_mismatch": FormatMismatchError,
    "invalid_request": InputError, "model_error": ModelError, "backend_unavailable": BackendUnavailableError,
    "detection_unavailable": DetectorUnavailableError}
#: Classes the service answers with a 5xx status: the server's state, not a refusal of the request.
_SERVER_SIDE = (ModelError, BackendUnavailableError, DetectorUnavailableError)
#: What score, compare and whatif answer as bytes (``output=``, the service's ``?format=``): its content type, and
#: what a message calls it.
_OUTPUTS = {"html": ("text/html", "page"), "png": ("image/png", "PNG figure"), "edited": ("image/png", "PNG image")}


class Client:
    """A foveal service at ``url``.

    Args:
        url: the service's base URL, e.g. ``http://127.0.0.1:8080``.
        api_key: sent as ``Authorization: Bearer`` when the service requires keys.
        timeout: seconds for a whole request: one whose answer has not arrived in full by then is given up
            (``ServiceError`` code ``timeout``), however slowly its status line, headers or body come (the
            exchange runs on a helper thread, which drops it at its next read).
        deadline_ms: sent as ``X-Deadline-Ms``: the service answers 504 unless the maps are ready this long after
            the request arrived (the scoring, drawing and encoding after them are not cut short).

    Thread-safe: one connection pool serves every thread. A Client pickles (for Ray or a process pool) as its
    settings: the copy opens connections of its own.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0,
                 deadline_ms: float | None = None) -> None:
        try:
            import httpx
        except ImportError:
            raise FovealError('foveal.Client needs httpx: pip install "foveal[serve]"') from None
        self.url, self._shown = _checked_url(url)
        headers = {"User-Agent": "foveal-client"}
        if api_key is not None and api_key != "":  # 0 or [] were taken for no key, the requests sent without one
            if not isinstance(api_key, str) or not api_key.isascii() or not api_key.isprintable():
                raise InputError("Client: api_key must be printable ASCII text (it travels in an HTTP header)")
            headers["Authorization"] = f"Bearer {api_key}"
        for name, value in (("timeout", timeout), ("deadline_ms", deadline_ms)):
            if value is None and name == "deadline_ms":  # no deadline of the client's own
                continue
            number = real_number(value)  # NumPy scalars too, as the Engine takes them
            if number is None or not 0 < number < math.inf:
                raise InputError(f"Client: {name} must be a positive number, got {value!r}")
        timeout = float(timeout)
        if deadline_ms is not None:
            deadline_ms = float(deadline_ms)
            headers["X-Deadline-Ms"] = _deadline_header(deadline_ms)
        self._closed, self._timeout = False, timeout
        self._settings = {"api_key": api_key, "timeout": timeout, "deadline_ms": deadline_ms}
        self._prefix = urlsplit(self.url).path
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray tasks and process pools are sent a Client: it travels as its settings, and opens its own connections.
        return functools.partial(Client, self.url, **self._settings), ()

    def __repr__(self) -> str:
        return f"Client({self._shown!r})"

    def close(self) -> None:
        self._closed = True  # first: a call in another thread then tells a pool closed under it by this flag
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what Engine does --------------------------------------------------------------------------------------
    def predict(self, image: ImageLike) -> SaliencyMap:
        """Saliency map of one image (path, bytes, PIL image or uint8 array): the service's exact float32 map."""
        response = self._post("/v1/predict", params={"format": "npy"}, content=_encode(image),
                              headers={"Content-Type": "application/octet-stream"})
        with self._answer(response, "map"):
            prob = np.load(io.BytesIO(response.content), allow_pickle=False)
            provenance = json.loads(response.headers.get("x-foveal-provenance", "{}"))
            return SaliencyMap(prob, provenance)

    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: Literal["raise"] = "raise") -> list[SaliencyMap]: ...
    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: Literal["return"]) -> list[SaliencyMap | FovealError]: ...
    @overload
    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *, errors: str = "raise"
                      ) -> list[Any]: ...

    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16, *,
                      errors: str = "raise") -> list[Any]:
        """Maps of many images, in order; ``batch_size`` requests in flight at once (the service batches them, or
        on the CPU spreads them over its lanes).

        ``errors`` as in :meth:`Engine.predict_batch`: ``"raise"`` raises the first failure in order, its index in
        the message; ``"return"`` gives each image its map or the :class:`FovealError` that stopped it."""
        if errors not in ("raise", "return"):
            raise InputError(f"errors must be 'raise' or 'return', got {errors!r}")
        items, batch_size = image_list(images), checked_count(batch_size, "batch_size")

        def one(image: ImageLike) -> SaliencyMap | FovealError:
            try:
                return self.predict(image)
            except FovealError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(batch_size, 64)) as pool:
            results = list(pool.map(one, items))
        if errors == "raise":
            raise_first_error(results)
        return results

    # -- what the CLI does -------------------------------------------------------------------------------------
    @overload
    def score(self, image: ImageLike, elements: Any, *, norms: str | None = None, format: str | None = None,
              pass_percentile: float | None = None, output: Literal["json"] = "json") -> dict[str, Any]: ...
    @overload
    def score(self, image: ImageLike, elements: Any, *, norms: str | None = None, format: str | None = None,
              pass_percentile: float | None = None, output: Literal["html"]) -> bytes: ...

    def score(self, image: ImageLike, elements: Any, *, norms: str | None = None, format: str | None = None,
              pass_percentile: float | None = None, output: str = "json") -> dict[str, Any] | bytes:
        """The ``scores.json`` document of ``foveal score``: ``elements`` is an element file path (.json), its
        JSON text, or the decoded object; ``norms`` the name of norms the service has (:meth:`norms`); ``format``
        the creative format to compare against in them. ``output="html"``: the ``report.html`` page instead, as
        bytes (``format`` is taken, so the service's ``?format=`` is ``output`` here)."""
        _checked_output(output, ("json", "html"), "score")
        if format in ("json", "html"):  # the service's ?format=html, guessed: it would name the creative format
            raise InputError(f"Client.score: format {format!r} names the creative format to compare against in the "
                             "norms; choose the answer with output='json' or output='html'")
        fields = {"elements": _elements_text(elements)}
        for name, value in (("norms", norms), ("format", format)):
            if value is None:
                continue
            if not isinstance(value, str):  # a dict failed in httpx, a 5 went as "5"
                raise InputError(f"Client.score: {name} must be text (a name), got {type(value).__name__}")
            fields[name] = value
        if pass_percentile is not None:
            number = real_number(pass_percentile)
            if number is None or not 0 < number <= 100:
                raise InputError(f"pass_percentile must be a number in (0, 100], got {pass_percentile!r}")
            fields["pass_percentile"] = repr(number)
        return self._output(self._post("/v1/score", params={"format": output}, files={"image": _file(image)},
                                       data=fields), output)

    @overload
    def compare(self, image_a: ImageLike, image_b: ImageLike, elements_a: Any, elements_b: Any | None = None, *,
                allow_format_mismatch: bool = False, output: Literal["json"] = "json") -> dict[str, Any]: ...
    @overload
    def compare(self, image_a: ImageLike, image_b: ImageLike, elements_a: Any, elements_b: Any | None = None, *,
                allow_format_mismatch: bool = False, output: Literal["png", "html"]) -> bytes: ...

    def compare(self, image_a: ImageLike, image_b: ImageLike, elements_a: Any, elements_b: Any | None = None, *,
                allow_format_mismatch: bool = False, output: str = "json") -> dict[str, Any] | bytes:
        """The ``compare.json`` document of ``foveal compare`` (one element set: the same for both);
        ``output="png"`` the figure (both overlays and the difference map), ``"html"`` the page, as bytes."""
        _checked_output(output, ("json", "png", "html"), "compare")
        # One set goes as the field for both, so that a refusal on image B names it, not an 'elements_b' never given.
        data = ({"elements": _elements_text(elements_a)} if elements_b is None else
                {"elements_a": _elements_text(elements_a), "elements_b": _elements_text(elements_b)})
        allowed = checked_flag(allow_format_mismatch, "allow_format_mismatch")  # "no" would be sent as true
        data["allow_format_mismatch"] = "true" if allowed else "false"
        return self._output(self._post("/v1/compare", params={"format": output}, data=data,
                                       files={"image_a": _file(image_a), "image_b": _file(image_b)}), output)

    @overload
    def whatif(self, image: ImageLike, elements: Any, *, edits: Sequence[dict[str, Any]] | None = None,
               search: dict[str, Any] | None = None, output: Literal["json"] = "json", edited: bool = False
               ) -> dict[str, Any]: ...
    @overload
    def whatif(self, image: ImageLike, elements: Any, *, edits: Sequence[dict[str, Any]] | None = None,
               search: dict[str, Any] | None = None, output: Literal["png", "edited"]) -> bytes: ...

    def whatif(self, image: ImageLike, elements: Any, *, edits: Sequence[dict[str, Any]] | None = None,
               search: dict[str, Any] | None = None, output: str = "json", edited: bool = False
               ) -> dict[str, Any] | bytes:
        """The ``whatif.json`` document of ``foveal whatif``: ``edits`` like ``[{"op": "move", "element": "cta",
        "dx": 0, "dy": -60}]``, or ``search`` like ``{"element": "cta", "grid": [5, 5], "top": 3}``.
        ``output="png"``: the before/after/difference figure, ``"edited"`` the edited creative (for a search, the
        best), as PNG bytes. ``edited=True`` (JSON only) adds the edited creative to the document as
        ``"edited": {"format": "png", "data": BASE64}``: one request for both."""
        _checked_output(output, ("json", "png", "edited"), "whatif")
        if edited is not False and (edited is not True or output != "json"):
            raise InputError(f"Client.whatif: edited must be True or False, and True only with output='json' (it adds "
                             f"the edited creative to the document), got edited={edited!r}, output={output!r}")
        data = {"elements": _elements_text(elements)}
        if edits is not None:
            if not is_list_like(edits):
                raise InputError(f"edits: expected a list of edits such as {{\"op\": \"move\", \"element\": NAME, "
                                 f"\"dx\": DX, \"dy\": DY}}, got {type(edits).__name__}")
            data["edits"] = _json(list(edits), "edits", InputError)
        if search is not None:
            data["search"] = _json(search, "search", InputError)
        params = {"format": output, **({"edited": "true"} if edited else {})}
        return self._output(self._post("/v1/whatif", params=params, files={"image": _file(image)}, data=data), output)

    def detect(self, image: ImageLike) -> list[Element]:
        """Elements found automatically in one image (as :meth:`predict` takes it): what
        :func:`foveal.detect_elements` returns, from the service's detector. :class:`DetectorUnavailableError` when
        the service lacks the ``detect`` extra (``models()["detection"]`` says whether it has it)."""
        response = self._post("/v1/detect", content=_encode(image),
                              headers={"Content-Type": "application/octet-stream"})
        with self._answer(response, "element list"):
            return [_detected(item) for item in response.json()["elements"]]

    def models(self) -> dict[str, Any]:
        """The model the service runs and the shipped models' cards."""
        return self._document(self._get("/v1/models"))

    def norms(self) -> dict[str, Any]:
        """Norms the service has, by name."""
        with self._answer(self._get("/v1/norms"), "norms list") as response:
            return dict(response.json()["norms"])

    def ready(self) -> bool:
        """True when the service has its model loaded and warmed and is not shutting down (within the timeout)."""
        try:
            self._send("GET", "/readyz")
        except FovealError:  # a refusal, a failure or no answer in time: not ready
            return False
        return True

    # -- transport ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _answer(self, response: Any, what: str) -> Iterator[Any]:
        """Decoding a 200 answer: one that is no foveal answer (another server on that port, a proxy's page) is a
        ServiceError saying so, not whatever the decoder raised."""
        try:
            yield response
        except Exception as exc:  # noqa: BLE001 - np.load, json and SaliencyMap each raise their own kinds
            path = response.request.url.path.removeprefix(self._prefix)
            raise ServiceError(f"{self._shown}{path}: the answer is no foveal {what} ({type(exc).__name__}); is "
                               f"{self._shown} a foveal service?", status=response.status_code,
                               code="bad_answer") from None

    def _output(self, response: Any, output: str) -> dict[str, Any] | bytes:
        """A document route's answer: its JSON document, or for another ``output`` its bytes, of that type."""
        if output == "json":
            return self._document(response)
        media_type, what = _OUTPUTS[output]
        with self._answer(response, what):
            if response.headers.get("content-type", "").partition(";")[0].strip().lower() != media_type:
                raise TypeError(f"not {media_type}")
            return response.content

    def _document(self, response: Any) -> dict[str, Any]:
        with self._answer(response, "document"):
            doc = response.json()
            if not isinstance(doc, dict):
                raise TypeError("not a JSON object")
            return doc

    def _get(self, path: str):
        return self._send("GET", path)

    def _post(self, path: str, **kwargs: Any):
        return self._send("POST", path, **kwargs)

    def _send(self, method: str, path: str, **kwargs: Any):
        if self._closed:
            raise self._closed_error()
        timed_out = ServiceError(f"{self._shown}{path}: no answer within the client timeout ({self._timeout:g} s)",
                                 code="timeout")
        deadline = time.monotonic() + self._timeout
        # httpx bounds each connect, read and write, not the request: a server trickling its status line, headers
        # or body a byte at a time held the caller for as long as it liked. The exchange runs on a helper thread
        # that the caller waits for until the deadline (the helper gives up on the body then too; on headers, at
        # its next read's timeout).
        outcome: list[Any] = []
        done = threading.Event()

        def exchange() -> None:
            try:
                outcome.append(self._exchange(method, path, deadline, timed_out, kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=exchange, name="foveal-client", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic()) + 0.05):
            raise timed_out
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def _closed_error(self) -> ServiceError:
        return ServiceError(f"{self._shown}: this Client is closed; make a new one", code="closed")

    def _exchange(self, method: str, path: str, deadline: float, timed_out: ServiceError, kwargs: dict[str, Any]):
        import httpx

        try:
            return self._exchanged(method, path, deadline, timed_out, kwargs)
        except (RuntimeError, httpx.HTTPError, ServiceError) as exc:
            # close() from another thread during this call: httpx refuses the closed pool (RuntimeError) or loses
            # the connection under the request (EBADF): the Client was closed, the service is not unreachable
            if self._closed and not (isinstance(exc, ServiceError) and exc.code != "unreachable"):
                raise self._closed_error() from None
            raise

    def _exchanged(self, method: str, path: str, deadline: float, timed_out: ServiceError, kwargs: dict[str, Any]):
        import httpx

        try:
            with self._http.stream(method, path, **kwargs) as streamed:
                raw, size = [], 0
                for chunk in streamed.iter_raw():
                    raw.append(chunk)
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise timed_out
                    if size > MAX_ANSWER_BYTES:  # no foveal answer is that large: memory must not grow with it
                        raise ServiceError(f"{self._shown}{path}: the answer runs past {MAX_ANSWER_BYTES >> 20:,} "
                                           f"MiB; is {self._shown} a foveal service?", code="bad_answer")
            # Decoded (gzip...) as it is built: inside the try, so an answer that does not decode is a bad answer.
            response = httpx.Response(streamed.status_code, headers=streamed.headers, content=b"".join(raw),
                                      request=streamed.request)
        except httpx.TimeoutException:
            raise timed_out from None
        except httpx.DecodingError as exc:
            raise ServiceError(f"{self._shown}{path}: the answer cannot be decoded ({exc}); is {self._shown} a "
                               "foveal service?", code="bad_answer") from None
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self._shown}{path}: cannot reach the service ({exc})", code="unreachable") \
                from None
        if response.status_code >= 400:
            raise _error_of(response, f"{self._shown}{path}")
        return response


def _error_of(response, where: str) -> FovealError:
    """The error a refusal from ``where`` (the URL as messages show it) stands for."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except Exception:  # noqa: BLE001 - a proxy's HTML error page, say
        code = "bad_answer"
        message = (f"{where}: HTTP {response.status_code} without a foveal error in it; is this a foveal service, "
                   "or a proxy in front of one that failed?")
    if code == "too_many_pixels" and response.status_code == 413:  # an ImageError, as Engine.predict raises it
        return TooManyPixelsError(message, detail=message, limit=None, limit_text=None)
    cls = _ERRORS.get(code)
    if cls is not None and (response.status_code < 500 or cls in _SERVER_SIDE):
        return cls(message)  # type: ignore[misc]
    return ServiceError(message, status=response.status_code, code=code,
                        retry_after=_retry_after(response.headers.get("retry-after"), response.headers.get("date")))


def _checked_output(output: Any, offered: tuple[str, ...], method: str) -> None:
    """Refuse an ``output`` that ``Client.method`` does not offer, before anything is read or sent."""
    if not (isinstance(output, str) and output in offered):
        names = ", ".join(repr(name) for name in offered[:-1]) + f" or {offered[-1]!r}"
        raise InputError(f"Client.{method}: output must be {names}, got {output!r}")


def _detected(item: Any) -> Element:
    """One element of a /v1/detect answer as the Element that detect_elements makes; TypeError if it is none."""
    name, kind, box = item["name"], item["kind"], item["box"]
    if not (isinstance(name, str) and isinstance(kind, str) and isinstance(box, list) and len(box) == 4
            and all(type(v) is int for v in box)):
        raise TypeError("not an element")
    return Element(name=name, kind=kind, box=tuple(box))


def _deadline_header(ms: float) -> str:
    """``X-Deadline-Ms`` for a deadline of ``ms``: the plain decimal the service reads (``repr`` would give 1e-05),
    below its bound; InputError otherwise."""
    if not ms < MAX_DEADLINE_MS:
        raise InputError(f"Client: deadline_ms must be below {MAX_DEADLINE_MS:.0e} (about 31 years), got {ms!r}")
    text = format(decimal.Decimal(repr(float(ms))), "f")
    return text[:-2] if text.endswith(".0") else text


def _retry_after(value: str | None, date: str | None) -> float | None:
    """Seconds to wait before retrying, from a ``Retry-After`` header: RFC 9110's delay-seconds (a decimal is read
    too) or HTTP-date (measured from the answer's ``Date``, else this machine's clock), at most
    :data:`MAX_RETRY_AFTER_S`; None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if re.fullmatch(r"[0-9]+(\.[0-9]*)?", text):
        seconds = float(text)  # inf for hundreds of digits: bounded below
    else:
        when = _http_date(text)
        if when is None:
            return None
        sent = _http_date(date or "")
        seconds = when - (time.time() if sent is None else sent)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _http_date(text: str) -> float | None:
    """An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) as a POSIX time; None if it is not
    one."""
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime has no zone: HTTP-dates are GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _encode(image: ImageLike) -> bytes:
    """Bytes to upload: files and encoded bytes as they are, arrays and PIL images as lossless PNG."""
    if isinstance(image, (str, os.PathLike)):
        # Engine's checks: a regular file (a FIFO would block forever), no larger than an image can be, not empty,
        # and of a format foveal reads, said naming the file: the service knows the upload only as "<bytes>".
        data = read_input(image, max_file_bytes(DEFAULT_MAX_PIXELS), "image file", ImageError)
        if not data:
            raise ImageError(f"{os.fspath(image)}: file is empty")
        check_header(data, _ANY_SIZE, os.fspath(image))  # the size is the service's to limit
        return data
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    from .fileio import encode_png
    from .imageio import load_image

    return encode_png(load_image(image))


def _file(image: ImageLike) -> tuple[str, bytes, str]:
    name = Path(os.fspath(image)).name if isinstance(image, (str, os.PathLike)) else "image"
    return name, _encode(image), "application/octet-stream"


def _elements_text(elements: Any) -> str:
    """Element JSON to send: a .json file's text, JSON text as it is, or the JSON of elements in memory (dicts,
    :class:`Element` objects or an :class:`ElementSpec`)."""
    from .scoring.elements import MAX_ELEMENT_FILE_BYTES, ElementSpec
    from .scoring.textfile import read_text

    if isinstance(elements, (str, os.PathLike)) and not str(elements).lstrip("\ufeff \t\r\n").startswith(("{", "[")):
        suffix = Path(elements).suffix.lower()
        if suffix == ".csv":
            raise ElementSpecError(f"{os.fspath(elements)}: the service reads JSON element files; load it with "
                                   "foveal.scoring.load_elements and pass the result")
        if isinstance(elements, os.PathLike) or suffix == ".json":
            return read_text(elements, "element file", MAX_ELEMENT_FILE_BYTES, ElementSpecError)
        if elements == "auto":  # what foveal score takes: the service's routes score only the boxes they are given
            raise ElementSpecError("elements 'auto': the service does not detect elements while scoring; pass the "
                                   "elements Client.detect(image) returns")
        raise ElementSpecError(f"elements {str(elements)[:80]!r}: neither JSON text nor a .json element file; give "
                               "a path ending in .json, JSON text, or the elements themselves")
    if isinstance(elements, str):
        return elements
    if isinstance(elements, ElementSpec):
        elements = {"elements": list(elements), **({"format": elements.format} if elements.format else {})}
    return _json(elements, "elements", ElementSpecError)


def _json(obj: Any, what: str, error: type[InputError]) -> str:
    """``obj`` as JSON text (:class:`Element` objects in their file form, numpy numbers and arrays as JSON numbers
    and lists), else ``error`` naming ``what``."""
    try:
        return json.dumps(obj, allow_nan=False, default=_wire_default)
    except (TypeError, ValueError) as exc:
        raise error(f"{what}: cannot send this as JSON ({exc}); give plain numbers, text, lists and dicts") from None


def _wire_default(obj: Any) -> Any:
    from .scoring.elements import Element

    return obj.to_dict() if isinstance(obj, Element) else json_default(obj)


def _checked_url(url: object) -> tuple[str, str]:
    """``url`` without a trailing slash, and the same with any password replaced by ``***`` (for messages)."""
    example = "e.g. http://127.0.0.1:8080"
    if not isinstance(url, str):
        raise InputError(f"Client: the service URL must be text, {example}; got {type(url).__name__}")
    try:
        parts = urlsplit(url.rstrip("/"))
        port = parts.port
    except ValueError as exc:
        raise InputError(f"Client: {url!r} is not a URL ({exc}); {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        raise InputError(f"Client: {url!r}: give an http:// or https:// URL with a host, {example}")
    shown = url.rstrip("/")
    if parts.password is not None:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{parts.username}:***@{host}" + (f":{port}" if port is not None else "")
        shown = parts._replace(netloc=netloc).geturl()
    if parts.query or parts.fragment or url.rstrip("/").endswith(("?", "#")):
        base = urlsplit(shown)._replace(query="", fragment="").geturl().rstrip("?#")
        raise InputError(f"Client: {base}: give the service's base URL without a query or fragment (a key goes in "
                         "api_key=)")
    return url.rstrip("/"), shown
