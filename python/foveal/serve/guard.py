"""The ASGI layer every request passes first: API keys, body size limit, per-route metrics and network time."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable
from urllib.parse import parse_qsl

from ..errors import InputError, ServiceError, repeated
from .auth import KeyChecker, other_scheme, presented_key
from .batcher import shutting_down
from .connection import MALFORMED
from .errors import retry_after_value
from .metrics import ServiceMetrics

#: Paths answered without an API key: liveness/readiness probes, the page and the API's own description.
OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json")
#: Headers that decide how a request is handled: sent twice, which one counts would be a guess (and a proxy that
#: checked the first key could be passed with a second).
SINGLE_HEADERS = frozenset(("authorization", "x-api-key", "x-deadline-ms", "content-type", "host"))


def check_hosts(hosts: Any) -> tuple[str, ...]:
    """Allowed host names, lower case: ``api.example.com``, ``*.example.com`` (any name under it), ``127.0.0.1``,
    ``[::1]``; InputError for a name with a port, a scheme or a path."""
    if isinstance(hosts, str) or not isinstance(hosts, (tuple, list)):
        raise InputError(f"allowed_hosts: expected a list of host names, got {type(hosts).__name__}")
    checked = []
    for host in hosts:
        name = host.strip().lower() if isinstance(host, str) else None
        bare = name.removeprefix("*.") if name else ""
        ipv6 = bare.startswith("[") and bare.endswith("]") and ":" in bare
        if not bare or not (ipv6 or all(c.isalnum() or c in "-._" for c in bare)) or not bare.isascii():
            raise InputError(f"allowed host {host!r}: give a host name as clients write it in the URL, without "
                             "scheme, port or path (api.example.com, *.example.com, 127.0.0.1, [::1])")
        checked.append(name)
    return tuple(checked)


def host_allowed(header: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header (``name`` or ``name:port``) names one of ``allowed``."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 address: [::1]:8080
        name = header[:header.find("]") + 1]
    else:
        name = header.partition(":")[0]
    return bool(name) and any(name == a or (a.startswith("*.") and name.endswith(a[1:])) for a in allowed)


def unknown_host(header: str) -> ServiceError:
    """The refusal of a request whose Host is none of ``--allowed-host``: a page whose name an attacker points at
    this machine (DNS rebinding) sends its own name as Host."""
    return ServiceError(f"the Host header {header[:80]!r} names no host this service answers to; address it by one "
                        "of its --allowed-host names", status=400, code="unknown_host")


class Guard:
    """Pure ASGI middleware (no buffering of bodies, so it adds microseconds, not copies).

    ``routes`` lists the route templates used as metric labels; any other path is labelled ``other`` so a
    scanner cannot grow the label set.  A body still incomplete ``body_timeout_s`` after the request began is
    answered 408, so a client that stops sending mid-body does not hold its connection and request slot forever.
    """

    def __init__(self, app: Callable, *, metrics: ServiceMetrics, routes: tuple[str, ...], max_body_bytes: int,
                 keys: KeyChecker | None, body_timeout_s: float, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app, self.metrics, self.routes = app, metrics, frozenset(routes)
        self.max_body_bytes, self.keys, self.body_timeout_s = max_body_bytes, keys, body_timeout_s
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await self._refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        route = path if path in self.routes else "other"
        started = time.perf_counter()
        status = [500]
        first_sent: list[float] = []
        metrics = self.metrics
        metrics.in_flight.add(1)

        async def send_timed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                first_sent.append(time.perf_counter())
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and first_sent:
                metrics.send.observe(time.perf_counter() - first_sent[0], route=route)

        try:
            refusal = self._refusal(scope, path)
            if refusal is not None:
                await _send_error(send_timed, refusal)
                return
            await self.app(scope, self._limited(receive, route, started + self.body_timeout_s), send_timed)
        except asyncio.CancelledError:
            if first_sent:
                raise  # cut off mid-answer: the server closes the connection
            # The server stops at once (uvicorn: a second Ctrl-C, or the graceful timeout passed) and cancels what
            # is in flight; answered here, such a request gets the API's 503, not the server's plain-text 500.
            await _send_error(send_timed, shutting_down(), close=True)
        finally:
            metrics.in_flight.add(-1)
            if not scope.get(MALFORMED):  # answered 400 by the connection, as the requests it refuses before the app
                metrics.requests.inc(route=route, status=str(status[0]))
                metrics.latency.observe(time.perf_counter() - started, route=route)

    async def _refuse_websocket(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """The service has no WebSocket endpoint (``foveal serve`` answers a handshake as plain HTTP); a server that
        speaks WebSocket hands the app the handshake, which is refused in the API's JSON where that server can send
        an HTTP answer to a handshake, and counted like any refused request."""
        started = time.perf_counter()
        path = route_path(scope)
        route = path if path in self.routes else "other"
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            error = ServiceError(f"there is no WebSocket endpoint at {path}; this service answers plain HTTP "
                                 "requests", status=404, code="not_found")

            async def send_http(message: dict[str, Any]) -> None:
                await send({**message, "type": "websocket." + message["type"]})

            await _send_error(send_http, error)
            status = error.status
        else:
            await send({"type": "websocket.close", "code": 1008})  # the server answers the handshake 403
            status = 403
        self.metrics.requests.inc(route=route, status=str(status))
        self.metrics.latency.observe(time.perf_counter() - started, route=route)

    def _refusal(self, scope: dict[str, Any], path: str) -> ServiceError | None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name in headers and name in SINGLE_HEADERS:
                return ServiceError(f"the header {name} is sent more than once; send it once", status=400,
                                    code="invalid_input")
            headers[name] = raw_value.decode("latin-1")
        if "host" not in headers and scope.get("http_version") == "1.1":  # RFC 9112 3.2: a 400, not a guess
            return ServiceError("an HTTP/1.1 request needs a Host header naming the service; send one", status=400,
                                code="invalid_input")
        if self.allowed_hosts and not host_allowed(headers.get("host", ""), self.allowed_hosts):
            return unknown_host(headers.get("host", ""))
        # A browser's CORS preflight (no credentials) never gets here: the CORS layer, outside this one, answers it.
        if self.keys is not None and path not in OPEN_PATHS and (path.startswith("/v1/") or path == "/metrics"):
            try:
                self.keys.check(presented_key(headers), other_scheme(headers))
            except ServiceError as exc:
                return exc
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        twice = repeated(name for name, _ in query)
        if twice:  # as for the headers above: which copy counts would be a guess (the framework takes the last)
            return ServiceError(f"the query parameter {twice[0][:60]} is given more than once; give it once",
                                status=400, code="invalid_input")
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding not in ("identity", ""):  # else a compressed image would be refused as not being one
            return ServiceError(f"Content-Encoding {coding} is not accepted here; send the body uncompressed",
                                status=415, code="unsupported_media_type")
        codings = [c.strip() for c in headers.get("transfer-encoding", "").lower().split(",") if c.strip()]
        if any(c != "chunked" for c in codings):  # the parser undoes chunked only: the rest would reach the route
            return ServiceError(f"Transfer-Encoding {', '.join(codings)} is not supported here; send the body as it "
                                "is (chunked or with a Content-Length)", status=501, code="not_implemented")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        return None

    def _limited(self, receive: Callable, route: str, until: float) -> Callable:
        """``receive`` that counts body bytes (a chunked body has no Content-Length), times the body and gives it
        until ``until`` (a ``time.perf_counter()`` value) to arrive whole."""
        seen = [0]
        first: list[float] = []
        complete = [False]
        limit, metrics, timeout_s = self.max_body_bytes, self.metrics, self.body_timeout_s

        async def wrapped() -> dict[str, Any]:
            if complete[0]:  # later calls wait for the client to disconnect, for as long as the answer takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, until - time.perf_counter()))
            except asyncio.TimeoutError:
                raise ServiceError(f"the request body did not arrive within {timeout_s:g} s; send it whole and "
                                   "without pauses", status=408, code="request_timeout") from None
            if message["type"] == "http.request":
                if not first:
                    first.append(time.perf_counter())
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise _too_large(limit)
                if not message.get("more_body", False):
                    complete[0] = True
                    metrics.receive.observe(time.perf_counter() - first[0], route=route)
            return message

        return wrapped


def route_path(scope: dict[str, Any]) -> str:
    """The request's path inside this app: mounted under a prefix (``parent.mount("/foveal", app)``), the scope's
    ``path`` still starts with the prefix, which ``root_path`` holds."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):] or "/"
    return path


def _too_large(limit: int) -> ServiceError:
    return ServiceError(f"the request body is over this service's limit of {limit / 2**20:.3g} MiB; send a smaller "
                        "image", status=413, code="body_too_large")


async def _send_error(send: Callable, exc: ServiceError, *, close: bool = False) -> None:
    """The JSON error answer; ``close``: the connection ends after it."""
    body = json.dumps({"error": {"code": exc.code, "message": str(exc)}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="foveal"'))
    if exc.retry_after is not None:
        headers.append((b"retry-after", retry_after_value(exc.retry_after).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
