"""``create_app``: the foveal HTTP service as an ASGI app (FastAPI), mountable in any ASGI server.

Routes (docs/SERVING.md has the reference; the app publishes its OpenAPI schema at ``/openapi.json``):

- ``POST /v1/predict``: one image → its map (JSON with a 16-bit PNG, a grid, an overlay; or raw PNG / ``.npy``).
- ``POST /v1/score``: image + element JSON [+ norms name] → the ``scores.json`` of ``foveal score``.
- ``POST /v1/compare``, ``POST /v1/whatif``: ``compare.json`` / ``whatif.json`` as the CLI writes them, from the
  service's one engine: the CLI decides on the fp32 graph (``Engine(for_decisions=True)``), a service with the
  default precision on the CPU on the int8 graph, and its documents carry the int8 caveat in ``notes``.  A second
  engine for decisions would split the batcher's one worker thread; serve with ``precision="fp32"`` for
  reference decisions (every route then runs about 1.4x the int8 network time).
- ``GET /v1/models``, ``GET /v1/norms``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Concurrency contract: an :class:`~foveal.Engine` is used from one thread at a time.  The app owns one engine and
one :class:`~.batcher.Batcher` whose single worker thread makes every engine call, so concurrent requests are
batched and serialised; request parsing, decoding, scoring and encoding run on the thread pool beside it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Collection, Literal, Mapping, TypeVar

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from .._version import __version__
from ..client import MAX_DEADLINE_MS
from ..detect import unavailable_reason as detection_unavailable
from ..errors import ImageError, InputError, ServiceError, TooManyPixelsError
from ..fileio import encode_png
from ..imageio import DecodedImage, check_header, decode
from ..models import available_models, load_card
from ..saliency_map import SaliencyMap
from ..scoring import compare as comparing
from ..scoring.elements import _short, parse_elements_json
from ..scoring.norms import Norms, engine_identity, load_norms
from ..scoring.recommend import Thresholds
from ..scoring.report import draw_boxes, render_html, score_document
from ..scoring.scores import DEFAULT_PASS_PERCENTILE
from ..scoring.textfile import parse_json
from ..scoring.whatif import (MAX_OVERLAP, edit_from_dict, position_count, whatif_document, whatif_edits,
                              whatif_search)
from . import codec
from .auth import KeyChecker, load_keys
from .batcher import Batcher, ThreadPredictor, client_disconnected, finite, whole
from .cors import CORS, check_origins
from .errors import HANDLERS
from .guard import Guard, check_hosts
from .lane import Lane
from .metrics import CONTENT_TYPE, MetricsExchange, ServiceMetrics
from .openapi import complete
from .page import DOCUMENT_HEADERS

log = logging.getLogger("foveal.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ROUTES = ("/v1/predict", "/v1/score", "/v1/compare", "/v1/whatif", "/v1/models", "/v1/norms", "/healthz", "/readyz",
          "/metrics", "/", "/v1/detect", "/openapi.json")
#: The smallest queue every route can use: /v1/compare queues two images at once.
MIN_QUEUE = 2
#: Most positions one /v1/whatif search may try (each is a full prediction).
MAX_SEARCH_POSITIONS = 400
#: Most edits one /v1/whatif request may apply: each fills a hole and copies the image (milliseconds to a tenth of
#: a second), on a thread the deadline cannot stop, so 20,000 one-pixel moves held the service for over a minute.
MAX_EDITS = 400


T = TypeVar("T")


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``foveal serve`` can set; :func:`create_app` takes it whole or as keyword overrides.

    ``norms`` maps a name clients use (``norms=NAME`` on /v1/score) to a norms.json path.  ``request_timeout_s``
    is the deadline of a request that sends no ``X-Deadline-Ms``, and the time every request's body may take to
    arrive (408 after it).  ``metrics_dir``: a directory shared by the
    worker processes of one service, so that ``/metrics`` sums them all (:class:`~.metrics.MetricsExchange`;
    ``foveal serve --workers N`` makes one).
    """

    model: str = "default"
    device: str = "cpu"
    precision: str = "auto"
    max_batch: int = 16
    max_wait_ms: float = 2.0
    max_queue: int = 256
    max_body_bytes: int = 32 * 2**20
    max_pixels: int = 40_000_000
    request_timeout_s: float = 60.0
    api_keys_file: str | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    norms: dict[str, str] = field(default_factory=dict)
    static_dir: str | None = str(STATIC_DIR)
    warmup: bool = True
    metrics_dir: str | None = None

    def __post_init__(self) -> None:
        # Checked here, for every caller (FastAPI mounts included), before a model loads.
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_pixels"):
            whole(name, getattr(self, name))
        if self.max_queue < MIN_QUEUE:
            raise InputError(f"max_queue must be at least {MIN_QUEUE}, got {self.max_queue}: /v1/compare queues its "
                             "two images together, and a queue of one would refuse every compare")
        finite("max_wait_ms", self.max_wait_ms, zero=True)
        finite("request_timeout_s", self.request_timeout_s, zero=False)
        object.__setattr__(self, "cors_origins", check_origins(self.cors_origins))
        object.__setattr__(self, "allowed_hosts", check_hosts(self.allowed_hosts))


@dataclass
class _State:
    config: ServeConfig
    metrics: ServiceMetrics
    detect_lane: Lane
    engine: Any = None
    batcher: Batcher | None = None
    exchange: MetricsExchange | None = None
    norms: dict[str, Norms] = field(default_factory=dict)
    ready: bool = False
    #: Why automatic detection cannot run here (None: it can); /v1/models says whether it is offered.
    detection_unavailable: str | None = None


def create_app(config: ServeConfig | None = None, *, engine: Any = None, **overrides: Any) -> FastAPI:
    """The foveal service as a FastAPI app.

    Args:
        config: settings (default :class:`ServeConfig`); ``overrides`` replace single fields.
        engine: an existing :class:`~foveal.Engine` to serve (else one is built from ``config`` at startup).
            The app becomes its only user: do not call it from other threads while the app runs.
    """
    config = replace(config or ServeConfig(), **overrides)
    # python-multipart logs each malformed body it refuses ("Expected boundary character 45, got 112") as a bare
    # warning: the client gets its 400, and the log would hold the parser's words without the request's.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    metrics = ServiceMetrics()
    state = _State(config=config, metrics=metrics, engine=engine,
                   exchange=MetricsExchange(config.metrics_dir, metrics) if config.metrics_dir else None,
                   # one detection at a time: it already uses every core (text network and faces side by side)
                   detect_lane=Lane("detect", workers=1, max_queue=config.max_queue, metrics=metrics),
                   detection_unavailable=detection_unavailable())
    keys = KeyChecker(load_keys(config.api_keys_file)) if config.api_keys_file else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(state)
        publisher = asyncio.create_task(_publish(state.exchange)) if state.exchange else None
        try:
            yield
        except asyncio.CancelledError:
            # The server stops at once (a second Ctrl-C) and cancels this task with the requests: nothing is
            # finished, and the stop is not logged as a failed shutdown with the cancellation's traceback.
            forced = True
        else:
            forced = False
        state.ready = False
        metrics.ready.set(0)
        if state.batcher is not None and not forced:
            await state.batcher.stop()  # uvicorn has drained the requests; this finishes any queued image
        if not forced:
            await asyncio.to_thread(state.detect_lane.shutdown)
        if publisher is not None:
            publisher.cancel()
            state.exchange.publish()  # the final counts stay in the other workers' sums

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and users run air-gapped.
    app = FastAPI(title="foveal", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Predict where people look at an image and score its elements. Errors are "
                              '`{"error": {"code", "message"}}`.')
    app.state.foveal = state
    for exc_class, handler in HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    _routes(app, state)
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI's first call caches its own schema; this one replaces it
            app.openapi_schema = complete(generated(), keys=keys is not None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if config.static_dir and Path(config.static_dir, "index.html").is_file():
        from .page import PageFiles

        app.mount("/", PageFiles(directory=config.static_dir, html=True, api_routes=app.router.routes),
                  name="static")
    app.add_middleware(Guard, metrics=metrics, routes=ROUTES, max_body_bytes=config.max_body_bytes, keys=keys,
                       body_timeout_s=config.request_timeout_s, allowed_hosts=config.allowed_hosts)
    if config.cors_origins:  # added last, so outermost: the guard's own refusals (401, 413...) carry its headers too
        # A page's script reads only the headers a browser is told it may: the map's scale and provenance, and
        # how long a busy service asks it to wait.
        app.add_middleware(CORS, allowed_hosts=config.allowed_hosts, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "X-Deadline-Ms", "Content-Type"],
                           expose_headers=["X-Foveal-Scale", "X-Foveal-Provenance", "Retry-After"])
    return app


def service_norms(engine: Any, paths: Mapping[str, str]) -> dict[str, Norms]:
    """The named norms files, each checked against ``engine``'s graph: a service has no way to accept norms of
    another graph, so a mismatch is refused with the one remedy it has."""
    loaded = {}
    for name, path in paths.items():
        norms = load_norms(path)
        mismatch = norms.check_graph(engine_identity(engine), allow_mismatch=True)
        if mismatch:
            raise InputError(f"norms {name!r}: {mismatch}; rebuild them with the model and precision this service "
                             "runs")
        loaded[name] = norms
    return loaded


def warmup_image(max_pixels: int) -> np.ndarray:
    """A grey 640×480 image, smaller where ``max_pixels`` asks: what the service first runs through its engine."""
    side = min(1.0, math.sqrt(max_pixels / (480 * 640)))
    return np.full((max(1, int(480 * side)), max(1, int(640 * side)), 3), 128, np.uint8)


async def _start(state: _State) -> None:
    config = state.config
    if state.engine is None:
        from ..engine import Engine

        state.engine = await asyncio.to_thread(Engine, config.model, device=config.device,
                                               precision=config.precision, max_pixels=config.max_pixels)
    state.norms.update(service_norms(state.engine, config.norms))
    # Off the event loop: the batcher asks the engine for its CPU lanes, which makes their sessions.
    state.batcher = await asyncio.to_thread(Batcher, state.engine, max_batch=config.max_batch,
                                            max_wait_ms=config.max_wait_ms, max_queue=config.max_queue,
                                            metrics=state.metrics)
    state.batcher.start()
    if config.warmup:  # first runs allocate and tune; a ready service answers at full speed
        blank = warmup_image(config.max_pixels)
        await state.batcher.warm_up([blank, blank])
    state.ready = True
    state.metrics.ready.set(1)
    log.info("foveal serve ready: %r", state.engine)


async def _publish(exchange: MetricsExchange) -> None:
    """This worker's snapshot into the shared directory, every ``period_s``, for as long as it serves."""
    while True:
        await asyncio.to_thread(exchange.publish)
        await asyncio.sleep(exchange.period_s)


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _deadline(request: Request, state: _State) -> float:
    """Absolute deadline (monotonic) from ``X-Deadline-Ms`` (milliseconds from now), else the default timeout."""
    raw = request.headers.get("x-deadline-ms")
    if raw is None:
        return time.monotonic() + state.config.request_timeout_s
    # Plain decimals only: float() would also take "1_000", "1e3" and "infinity". Whitespace around a field value
    # is not part of it (RFC 9110 5.5); the parser strips only the leading.
    value = raw.strip(" \t")
    ms = float(value) if _DECIMAL.fullmatch(value) else 0.0
    if not 0 < ms < MAX_DEADLINE_MS:
        raise InputError(f"X-Deadline-Ms must be a positive number of milliseconds below {MAX_DEADLINE_MS:.0e} such "
                         f"as 250, got {raw!r}")
    return time.monotonic() + ms / 1000.0


async def _decode(state: _State, data: bytes, field: str | None = None) -> DecodedImage:
    """``data`` decoded; ``field`` names the image in a refusal, where a request has more than one (a compare)."""
    try:
        return await run_in_threadpool(decode, data, state.config.max_pixels)
    except TooManyPixelsError as exc:
        if field is None:
            raise
        raise TooManyPixelsError(str(exc), detail=f"{exc.detail} (field {field!r})", limit=exc.limit,
                                 limit_text=exc.limit_text) from None
    except ImageError as exc:
        if field is None:
            raise
        raise ImageError(f"field {field!r}: {str(exc).removeprefix('<bytes>: ')}") from None


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (its body is read: what ``receive`` returns next is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _watch_disconnect(request: Request, gone: threading.Event) -> None:
    """Set ``gone`` when the client disconnects."""
    await _disconnected(request)
    gone.set()


async def _while_connected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, unless the client disconnects first: then ``work`` is cancelled (queued images and
    detection jobs are dropped unrun) and the request ends as 499, not as a 200 nobody reads."""
    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(_disconnected(request))
    finished = False
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        finished = task.done()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not finished:
        raise client_disconnected()
    return task.result()


def _not_ready() -> ServiceError:
    return ServiceError("the service is not ready (loading the model or shutting down); retry shortly", status=503,
                        code="not_ready", retry_after=1.0)


def _batcher(state: _State) -> Batcher:
    if not state.ready or state.batcher is None:
        raise _not_ready()
    return state.batcher


def _map_headers(smap: SaliencyMap) -> dict[str, str]:
    return {"X-Foveal-Provenance": json.dumps(smap.provenance, separators=(",", ":"))}


_IMAGE_BODY = {"content": {
    "image/*": {"schema": {"type": "string", "format": "binary"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}}}}


def _multipart(required: list[str], properties: dict[str, dict]) -> dict:
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}}


_FILE = {"type": "string", "format": "binary"}
_ELEMENTS = {"type": "string", "description": "element JSON, as `foveal score --elements` reads (text or file)"}
_TYPES = {"json": "application/json", "html": "text/html", "png": "image/png"}


#: Answers that are bytes (a PNG, an .npy) or a page, as the schema declares them: a media type without a schema
#: may be read as having no body.
_BYTES = {"schema": {"type": "string", "format": "binary"}}
_PAGE = {"schema": {"type": "string"}}
_BASE64_PNG = {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}


def _answers(*formats: str, document: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a document route in the schema: one content type per ``format`` it offers (``document``:
    the JSON one's schema)."""
    def body(f: str) -> dict[str, Any]:
        if f == "json":
            return {"schema": document or {"type": "object"}}
        return _PAGE if f == "html" else _BYTES
    return {200: {"content": {_TYPES[f]: body(f) for f in formats}}}


#: /v1/predict's JSON answer (docs/SERVING.md).
_PREDICT_DOCUMENT = {"type": "object", "required": ["shape", "provenance"], "properties": {
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2,
              "description": "[height, width] of the image and its map"},
    "provenance": {"type": "object", "description": "where the map came from: model, versions, hashes, backend"},
    "map": {"type": "object", "required": ["format", "scale", "data"], "description": "with map=true (the default)",
            "properties": {"format": {"const": "png16"}, "data": _BASE64_PNG,
                           "scale": {"type": "number", "description": "prob ≈ value × scale"}}},
    "grid": {"type": "object", "required": ["rows", "cols", "values"], "description": "with grid=COLSxROWS",
             "properties": {"rows": {"type": "integer", "minimum": 1}, "cols": {"type": "integer", "minimum": 1},
                            "values": {"type": "array", "description": "rows top to bottom, summing to 1",
                                       "items": {"type": "array", "items": {"type": "number"}}}}},
    "overlay": {"type": "object", "required": ["format", "data"], "description": "with overlay=true",
                "properties": {"format": {"const": "png"}, "data": _BASE64_PNG}}}}
#: /v1/detect's answer: the element file `foveal detect` writes.
_DETECT_DOCUMENT = {"type": "object", "required": ["format", "units", "source", "elements"], "properties": {
    "format": {"type": "string"}, "units": {"const": "px"}, "source": {"const": "auto"},
    "elements": {"type": "array", "items": {
        "type": "object", "required": ["name", "kind", "box", "confidence", "source"], "properties": {
            "name": {"type": "string"}, "kind": {"type": "string"},
            "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                    "description": "[x, y, w, h] in pixels"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "source": {"const": "auto"},
            "text": {"type": "string", "description": "what was read, where text was"}}}}}}
_READY_DOCUMENT = {"type": "object", "required": ["status", "queue_depth"], "properties": {
    "status": {"const": "ready"}, "queue_depth": {"type": "integer", "minimum": 0}}}


#: /v1/whatif's JSON answer: whatif.json, and with ``edited=true`` the edited creative in it.
_WHATIF_DOCUMENT = {"type": "object", "description": "whatif.json, as `foveal whatif` writes it", "properties": {
    "edited": {"type": "object", "required": ["format", "data"], "description": "only with edited=true",
               "properties": {"format": {"const": "png"}, "data": {
                   "type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"}}}}}
#: The headers of /v1/predict's answer.
_MAP_HEADERS = {
    "X-Foveal-Provenance": {"schema": {"type": "string"}, "description": "png, npy: the provenance, as JSON"},
    "X-Foveal-Scale": {"schema": {"type": "number"}, "description": "png: prob ≈ value × scale"}}


_TRUE, _FALSE = ("true", "t", "yes", "y", "on", "1"), ("false", "f", "no", "n", "off", "0")
#: Most grid cells a JSON answer builds on the event loop (bigger grids go to a worker thread).
QUICK_GRID_CELLS = 64 * 64


@dataclass(frozen=True)
class _PredictOptions:
    """/v1/predict's query, read by hand: FastAPI's per-parameter validation costs a quarter of a millisecond per
    request, a tenth of what the whole service may add to a prediction."""

    format: str = "json"
    map: bool = True
    cells: tuple[int, int] | None = None
    overlay: bool = False

    @classmethod
    def of(cls, request: Request) -> "_PredictOptions":
        query = request.query_params
        _known_query(request, {"format", "map", "grid", "overlay"}, "format, map, grid and overlay")
        fmt = query.get("format", "json")
        if fmt not in ("json", "png", "npy"):
            raise InputError(f"format must be json, png or npy, got {fmt!r}")
        if fmt != "json":  # the answer is the map alone: a grid asked for beside it would be dropped without a word
            extra = [name for name in ("map", "grid", "overlay") if name in query]
            if extra:
                raise InputError(f"{extra[0]} applies to format=json only: format={fmt} answers with the map alone")
        grid = query.get("grid")
        return cls(fmt, _flag(query.get("map"), "map", True), None if grid is None else codec.parse_grid(grid),
                   _flag(query.get("overlay"), "overlay", False))

    @property
    def quick(self) -> bool:
        """A JSON answer without PNGs and with at most :data:`QUICK_GRID_CELLS` cells."""
        return not (self.map or self.overlay) and (self.cells is None or
                                                    self.cells[0] * self.cells[1] <= QUICK_GRID_CELLS)


def _known_query(request: Request, names: Collection[str], takes: str) -> None:
    """Refuse a query parameter the route does not read (``takes`` says what it does): a misspelt ``?gird=32x24``,
    or ``?norms=display`` where the norms go in the body, would otherwise be ignored without a word."""
    unknown = sorted(set(request.query_params) - set(names))
    if unknown:
        raise InputError(f"unknown query parameter {_short(unknown[0])}: {request.url.path} takes {takes}")


#: What /v1/score, /v1/compare and /v1/whatif take in their query: their inputs are multipart fields.
_FORMAT_ONLY = "format in its query; send the other fields in the multipart body"


def _flag(raw: str | None, name: str, default: bool) -> bool:
    """A true/false query parameter or form field; ``default`` when absent."""
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise InputError(f"{name} must be true or false, got {raw!r}")


_PREDICT_PARAMETERS = [
    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "png", "npy"], "default": "json"},
     "description": "json: a document with the map as base64 16-bit PNG; png: the 16-bit PNG itself (scale in "
                    "X-Foveal-Scale and its foveal:scale text chunk); npy: float32 .npy, the exact map"},
    {"name": "map", "in": "query", "schema": {"type": "boolean", "default": True},
     "description": "json: include the 16-bit PNG map"},
    {"name": "grid", "in": "query", "schema": {"type": "string"},
     "description": "json: also the map's mass summed into COLSxROWS cells, e.g. 32x24"},
    {"name": "overlay", "in": "query", "schema": {"type": "boolean", "default": False},
     "description": "json: also the colourised overlay as base64 PNG"},
]


def _routes(app: FastAPI, state: _State) -> None:  # noqa: C901 - one place that lists the API
    @app.post("/v1/predict", tags=["predict"], responses={
        200: {"content": {"application/json": {"schema": _PREDICT_DOCUMENT}, "image/png": _BYTES,
                          "application/x-npy": _BYTES}, "headers": _MAP_HEADERS}},
        openapi_extra={"requestBody": {"required": True, **_IMAGE_BODY}, "parameters": _PREDICT_PARAMETERS})
    async def predict(request: Request) -> Response:
        """One image (raw body or multipart field `image`) → its saliency map and provenance."""
        deadline = _deadline(request, state)
        batcher = _batcher(state)
        options = _PredictOptions.of(request)
        batcher.expect()
        try:
            data, _ = await codec.image_bytes(request)
            # refuse a bomb before it queues; off the event loop: Pillow parses every chunk before the pixels,
            # seconds for a body of empty metadata chunks, while every other request would wait
            await run_in_threadpool(check_header, data, state.config.max_pixels)
        finally:
            batcher.arrived()
        # decoded on the engine thread: one thread hop, not two
        smap = await _while_connected(request, batcher.submit(data, deadline))
        if options.format == "npy":
            return codec.NpyResponse(smap.prob, _map_headers(smap))
        if options.format == "png":
            png, scale = await run_in_threadpool(codec.png16, smap)
            return Response(png, media_type="image/png", headers={**_map_headers(smap), "X-Foveal-Scale": repr(scale)})

        def document() -> dict[str, Any]:
            doc: dict[str, Any] = {"shape": list(smap.shape), "provenance": smap.provenance}
            if options.map:
                png, scale = codec.png16(smap)
                doc["map"] = {"format": "png16", "scale": scale, "data": codec.b64(png)}
            if options.cells is not None:
                doc["grid"] = codec.grid(smap, *options.cells)
            if options.overlay:
                pixels = decode(data, state.config.max_pixels).pixels
                doc["overlay"] = {"format": "png", "data": codec.b64(encode_png(smap.overlay(pixels)))}
            return doc

        # A quick check (provenance, a small grid) takes tens of microseconds: a thread hop would cost more.
        return codec.JSONDocument(document() if options.quick else await run_in_threadpool(document))

    @app.post("/v1/score", tags=["score"], responses=_answers("json", "html"),
              openapi_extra=_multipart(["image", "elements"], {
        "image": _FILE, "elements": _ELEMENTS,
        "norms": {"type": "string", "description": "name of norms this server has (GET /v1/norms)"},
        "format": {"type": "string", "description": "format to compare against in the norms"},
        "pass_percentile": {"type": "number", "default": DEFAULT_PASS_PERCENTILE}}))
    async def score(request: Request, output: Literal["json", "html"] = Query(
            "json", alias="format", description="json: scores.json; html: the self-contained report.html")
            ) -> Response:
        """Image + elements → the `scores.json` document `foveal score` writes (same code, same schema)."""
        deadline = _deadline(request, state)
        batcher = _batcher(state)
        _known_query(request, {"format"}, _FORMAT_ONLY)
        form = await codec.form_of(request, "multipart/form-data with fields 'image' and 'elements'",
                                   ("image", "elements", "norms", "format", "pass_percentile"))
        data, filename = form.file("image")
        elements_text = form.text("elements", required=True)
        norms_name = form.text("norms")
        fmt = form.text("format")
        pass_text = form.text("pass_percentile")
        norms = _norms(state, norms_name)
        if norms is not None and fmt:
            norms.require_format(fmt, repr(norms_name))
        pass_percentile = _pass_percentile(pass_text)
        decoded = await _decode(state, data)
        spec = await run_in_threadpool(parse_elements_json, elements_text, decoded.pixels.shape[:2])
        smap = await _while_connected(request, batcher.submit(decoded, deadline))

        def work() -> Response:
            scores, doc = score_document(smap, spec.elements, smap.provenance, image=filename,
                                         elements_source="elements", norms=norms, norms_source=norms_name,
                                         format=fmt or spec.format, pass_percentile=pass_percentile,
                                         thresholds=Thresholds.of_card(state.engine.graph))
            if output == "html":
                return HTMLResponse(render_html(doc, decoded.pixels, draw_boxes(smap.overlay(decoded.pixels),
                                                                                scores)), headers=DOCUMENT_HEADERS)
            return codec.JSONDocument(doc)

        return await run_in_threadpool(work)

    @app.post("/v1/compare", tags=["score"], responses=_answers("json", "html", "png"),
              openapi_extra=_multipart(["image_a", "image_b"], {
        "image_a": _FILE, "image_b": _FILE, "elements": _ELEMENTS,
        "elements_a": _ELEMENTS, "elements_b": _ELEMENTS,
        "allow_format_mismatch": {"type": "boolean", "default": False, "description": "compare creatives of "
                                  "different formats anyway (the summary is qualified), as `foveal compare "
                                  "--allow-format-mismatch`"}}))
    async def compare(request: Request, output: Literal["json", "html", "png"] = Query(
            "json", alias="format", description="json: compare.json; html: compare.html; png: compare.png")
            ) -> Response:
        """A/B: two creatives and their elements (`elements` for both, or `elements_a` and `elements_b`) → the
        `compare.json` document `foveal compare` writes."""
        deadline = _deadline(request, state)
        batcher = _batcher(state)
        _known_query(request, {"format"}, _FORMAT_ONLY)
        form = await codec.form_of(request, "multipart/form-data with fields image_a, image_b and elements",
                                   ("image_a", "image_b", "elements", "elements_a", "elements_b",
                                    "allow_format_mismatch"))
        files = [form.file("image_a"), form.file("image_b")]
        both = form.text("elements")
        texts = [form.text("elements_a"), form.text("elements_b")]
        allow_mismatch = _flag(form.text("allow_format_mismatch"), "allow_format_mismatch", False)
        # A refusal names the field the client sent: 'elements' read against image B is not 'elements_b'.
        sources = [f"elements_{key}" if t is not None else f"elements (on image_{key})" for t, key in zip(texts, "ab")]
        if both is not None:
            texts = [t if t is not None else both for t in texts]
        if any(t is None for t in texts):
            raise InputError("give element JSON as field 'elements' (both creatives) or 'elements_a' and "
                             "'elements_b'")
        decoded = [await _decode(state, data, field) for (data, _), field in zip(files, ("image_a", "image_b"))]
        specs = [await run_in_threadpool(parse_elements_json, text, d.pixels.shape[:2], source)
                 for text, d, source in zip(texts, decoded, sources)]
        map_a, map_b = await _while_connected(request, batcher.submit_many(decoded, deadline))

        def work() -> Response:
            from ..scoring.scores import score_creative

            scores_a, scores_b = (score_creative(m, spec.elements, format=spec.format)
                                  for m, spec in zip((map_a, map_b), specs))
            comparison = comparing.compare_scores(scores_a, scores_b, allow_format_mismatch=allow_mismatch)
            diff = comparing.difference_map(map_a.prob, map_b.prob)
            inputs = {key: {"image": name, "elements": f"elements_{key}", "image_sha256": d.sha256}
                      for key, (_, name), d in zip("ab", files, decoded)}
            doc = comparing.build_document(comparison, scores_a, scores_b, diff, map_b.provenance, inputs)
            if output == "json":
                return codec.JSONDocument(doc)
            figure = comparing.compare_figure(decoded[0].pixels, map_a, scores_a, decoded[1].pixels, map_b, scores_b,
                                              diff)
            if output == "png":
                return Response(encode_png(figure), media_type="image/png")
            return HTMLResponse(comparing.render_html(doc, figure), headers=DOCUMENT_HEADERS)

        return await run_in_threadpool(work)

    @app.post("/v1/whatif", tags=["score"], responses=_answers("json", "png", document=_WHATIF_DOCUMENT),
              openapi_extra=_multipart(["image", "elements"], {
        "image": _FILE, "elements": _ELEMENTS,
        "edits": {"type": "string", "description": 'JSON list of edits: {"op": "move", "element": NAME, "dx": DX, '
                  '"dy": DY}, {"op": "scale", "element": NAME, "factor": F}, {"op": "swap", "elements": [A, B]}'},
        "search": {"type": "string", "description": 'JSON {"element": NAME, "grid": [COLS, ROWS] | "step": PX, '
                   '"top": 3, "max_overlap": 0.1}'}}))
    async def whatif(request: Request, output: Literal["json", "png", "edited"] = Query(
            "json", alias="format", description="json: whatif.json; png: whatif.png (before, after, "
            "difference); edited: the edited creative (for a search, the best)"), edited: bool = Query(
            False, description="json: also the edited creative (for a search, the best) as base64 PNG, so that one "
            "request gives both")) -> Response:
        """Edits (or a position search) on a creative → the `whatif.json` document `foveal whatif` writes."""
        deadline = _deadline(request, state)
        batcher = _batcher(state)
        _known_query(request, {"format", "edited"}, "format and edited in its query; send the other fields in the "
                     "multipart body")
        if edited and output != "json":
            raise InputError(f"edited=true adds the edited creative to the JSON document; with format={output} "
                             "leave it out")
        form = await codec.form_of(request, "multipart/form-data with fields image, elements and edits or search",
                                   ("image", "elements", "edits", "search"))
        data, filename = form.file("image")
        elements_text = form.text("elements", required=True)
        edits_text, search_text = form.text("edits"), form.text("search")
        if (edits_text is None) == (search_text is None):
            raise InputError("give exactly one of the fields 'edits' (a JSON list of edits) or 'search' (a JSON "
                             "object naming the element to place)")
        decoded = await _decode(state, data)
        spec = await run_in_threadpool(parse_elements_json, elements_text, decoded.pixels.shape[:2])
        gone = threading.Event()  # a search is seconds of work: stop it when its client leaves
        predictor = ThreadPredictor(batcher, deadline, gone)
        batch_size = state.config.max_batch

        def work() -> Response:
            start = time.perf_counter()
            if edits_text is not None:
                raw = parse_json(edits_text, "field 'edits'")
                if not isinstance(raw, list) or not raw:
                    raise InputError("field 'edits': expected a non-empty JSON list of edits")
                if len(raw) > MAX_EDITS:
                    raise InputError(f"field 'edits': {len(raw)} edits, this service applies at most {MAX_EDITS} per "
                                     "request; give each element one move and one scale")
                edits = [edit_from_dict(e, f"edits[{i}]") for i, e in enumerate(raw)]
                body, outcome, n = whatif_edits(predictor, decoded.pixels, spec.elements, edits, batch_size,
                                                progress=predictor.checked)
            else:
                options = _search_options(parse_json(search_text, "field 'search'"))
                _check_search_size(decoded.pixels.shape[:2], spec.elements, options)
                body, outcome, n = whatif_search(predictor, decoded.pixels, spec.elements, batch_size=batch_size,
                                                 thresholds=Thresholds.of_card(state.engine.graph), **options)
            inputs = {"image": filename, "image_sha256": decoded.sha256, "elements": "elements"}
            doc = whatif_document(body, outcome, inputs, seconds=time.perf_counter() - start, images_predicted=n,
                                  batch_size=batch_size)
            if edited:  # the page shows the edited creative beside the scores: one prediction, not two
                doc["edited"] = {"format": "png", "data": codec.b64(encode_png(outcome.edited.image))}
            if output == "edited":
                return Response(encode_png(outcome.edited.image), media_type="image/png")
            if output == "png":
                diff = comparing.difference_map(outcome.map_before.prob, outcome.map_after.prob)
                figure = comparing.compare_figure(decoded.pixels, outcome.map_before, outcome.before,
                                                  outcome.edited.image, outcome.map_after, outcome.after, diff,
                                                  labels=("before", "after"))
                return Response(encode_png(figure), media_type="image/png")
            return codec.JSONDocument(doc)

        watcher = asyncio.create_task(_watch_disconnect(request, gone))
        try:
            return await run_in_threadpool(work)
        finally:
            watcher.cancel()

    @app.post("/v1/detect", tags=["score"], responses=_answers("json", document=_DETECT_DOCUMENT),
              openapi_extra={"requestBody": {"required": True, **_IMAGE_BODY}})
    async def detect(request: Request) -> Response:
        """One image (raw body or multipart field `image`) → proposed elements: the element file
        `foveal detect` writes (each with `confidence` and `source: "auto"`), for the page to offer."""
        from ..detect import detect as detect_image, element_file

        deadline = _deadline(request, state)
        _known_query(request, (), "none; send only the image")
        data, _ = await codec.image_bytes(request)
        decoded = await _decode(state, data)
        return codec.JSONDocument(await _while_connected(request, state.detect_lane.run(
            lambda: element_file(detect_image(decoded, state.config.max_pixels), decoded.image_hw), deadline)))

    @app.get("/v1/models", tags=["service"])
    async def models() -> dict[str, Any]:
        """The model this service runs (graph, precision, backend), the cards of every shipped model, and whether
        `/v1/detect` can propose elements here (`detection`: it needs the `detect` extra)."""
        engine = state.engine
        serving = None if engine is None else {
            "name": engine.model.name, "version": engine.model.version, "sha256": engine.model.sha256,
            "graph_sha256": engine.graph_sha256, "precision": engine.precision, "backend": engine.backend,
            "max_pixels": state.config.max_pixels}
        cards = {}
        for name in available_models():
            card = load_card(name)
            cards[name] = {k: v for k, v in card.raw.items()}
        return {"serving": serving, "models": cards, "detection": state.detection_unavailable is None}

    @app.get("/v1/norms", tags=["service"])
    async def norms() -> dict[str, Any]:
        """Norms this service has, by the name /v1/score takes, with their formats and reference counts."""
        return {"norms": {name: {"model": n.model, "formats": dict(n.creatives)} for name, n in state.norms.items()}}

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], responses=_answers("json", document=_READY_DOCUMENT))
    async def readyz() -> Response:
        """Ready: the model is loaded and warmed and the service is not shutting down (else 503)."""
        if not state.ready:  # the API's error body, as the schema declares, for clients that read it
            raise _not_ready()
        return JSONResponse({"status": "ready", "queue_depth": state.batcher.depth if state.batcher else 0})

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text exposition (docs/SERVING.md lists the metrics)."""
        text = state.exchange.render() if state.exchange else state.metrics.render()
        return Response(text, media_type=CONTENT_TYPE)

    for route in list(app.router.routes):  # HEAD wherever GET, for probes and load balancers (not in the schema)
        if isinstance(route, APIRoute) and route.methods == {"GET"}:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False,
                              response_class=route.response_class)


def _norms(state: _State, name: str | None) -> Norms | None:
    if name is None or name == "":
        return None
    if name not in state.norms:
        have = ", ".join(sorted(state.norms)) or "none"
        raise InputError(f"norms {_short(name)} are not on this server (have: {have}); see GET /v1/norms")
    return state.norms[name]


def _pass_percentile(text: str | None) -> float:
    if text is None or text == "":
        return DEFAULT_PASS_PERCENTILE
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 100:
        raise InputError(f"pass_percentile must be a number in (0, 100], got {text!r}")
    return value


def _check_search_size(image_hw: tuple[int, int], elements: Any, options: dict[str, Any]) -> None:
    """Refuse a search over more than :data:`MAX_SEARCH_POSITIONS` positions, counted before any is built."""
    box = next((e.box for e in elements if e.name == options["name"]), None)
    if box is None:
        return  # whatif_search names the missing element
    # As the search lays them out (inside the edge margins): a count of its own refused searches within the bound.
    count = position_count(image_hw, box, grid=options["grid"], step=options["step"])
    if count > MAX_SEARCH_POSITIONS:
        raise InputError(f"field 'search': {count} positions to try, this service tries at most "
                         f"{MAX_SEARCH_POSITIONS} per request; use a coarser grid or a larger step")


def _search_options(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or not isinstance(obj.get("element"), str):
        raise InputError('field \'search\': expected {"element": NAME, "grid": [COLS, ROWS] | "step": PX, '
                         '"top": N, "max_overlap": F}')
    unknown = set(obj) - {"element", "grid", "step", "top", "max_overlap"}
    if unknown:
        raise InputError(f"field 'search': unknown keys {sorted(unknown)}")
    grid = obj.get("grid")
    if grid is not None and (not isinstance(grid, list) or len(grid) != 2
                             or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 50 for v in grid)):
        raise InputError(f"field 'search': grid must be [COLS, ROWS], whole numbers 1..50, got {grid!r}")
    if grid is not None and obj.get("step") is not None:  # else the size bound, counting the step's, says to coarsen
        raise InputError("field 'search': give grid or step, not both")
    for key in ("step", "top"):
        v = obj.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InputError(f"field 'search': {key} must be a positive whole number, got {v!r}")
    overlap = obj.get("max_overlap", MAX_OVERLAP)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap <= 1:
        raise InputError(f"field 'search': max_overlap must be a number in [0, 1], got {_short(overlap)}")
    return {"name": obj["element"], "grid": tuple(grid) if grid else None, "step": obj.get("step"),
            "top": obj.get("top", 3), "max_overlap": float(overlap)}
