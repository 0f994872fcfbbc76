"""CORS for the service: Starlette's layer, with a refused preflight answered in the API's JSON error body (Starlette
answers it in plain text) and saying what was refused."""
from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from ..errors import InputError
from .errors import error_response
from .guard import host_allowed, unknown_host

# What a browser sends as Origin: a scheme and a host, lower case, with a port when it is not the scheme's default.
_ORIGIN = re.compile(r"([a-z][a-z0-9+.-]*)://(\[[0-9a-f:.]+\]|[a-z0-9._~-]+)(?::([1-9][0-9]{0,4}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_origins(origins: object) -> tuple[str, ...]:
    """``origins`` as allowed CORS origins, else InputError: each ``"*"`` (any) or an origin exactly as browsers
    send it. ``example.com``, ``https://example.com/`` or ``https://example.com:443`` would never match one, and
    CORS would be silently off."""
    if isinstance(origins, str) or not isinstance(origins, (tuple, list)):
        raise InputError(f"cors_origins: expected a list of origins, got {type(origins).__name__}")
    for origin in origins:
        if origin == "*":
            continue
        if origin == "null":  # any page can make a sandboxed frame that sends it: allowing it would allow anyone
            raise InputError("CORS origin 'null' (sent by file:// pages and sandboxed frames, which any site can "
                             "create) would let every page in; serve the page from an http(s) origin and name that")
        match = _ORIGIN.fullmatch(origin) if isinstance(origin, str) else None
        port = int(match[3]) if match and match[3] else None
        if not match or (port is not None and (port > 65535 or port == _DEFAULT_PORTS.get(match[1]))):
            raise InputError(f"CORS origin {origin!r} is not one a browser sends: give scheme://host[:port] in lower "
                             "case, without a path, a trailing slash or the scheme's default port (e.g. "
                             "https://ads.example.com), or * for any")
    return tuple(origins)


class CORS(CORSMiddleware):
    """A preflight whose origin, method, headers or private-network request is not allowed is answered 403
    ``cors_refused``: without the ``Access-Control-Allow-Origin`` that would let the browser go on. A preflight to a
    Host none of ``allowed_hosts`` is refused as every request to it is (it is answered here, before the guard)."""

    def __init__(self, app: Any, *, allowed_hosts: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.allowed_hosts = allowed_hosts

    def preflight_response(self, request_headers: Headers) -> Response:
        if self.allowed_hosts and not host_allowed(request_headers.get("host", ""), self.allowed_hosts):
            refusal = unknown_host(request_headers.get("host", ""))
            return error_response(refusal.status or 400, refusal.code, str(refusal))
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = []
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin=origin):
            refused.append(f"origin {origin!r} is not allowed")
        method = request_headers["access-control-request-method"]
        if method not in self.allow_methods:
            refused.append(f"method {method} is not allowed (allowed: {', '.join(self.allow_methods)})")
        asked = [h.strip().lower() for h in request_headers.get("access-control-request-headers", "").split(",")]
        extra = [h for h in asked if h and h not in self.allow_headers]
        if extra and not self.allow_all_headers:
            allowed = ", ".join(sorted(self.allow_headers))
            refused.append(f"header {', '.join(extra)} is not allowed (allowed: {allowed})")
        if "access-control-request-private-network" in request_headers and not self.allow_private_network:
            refused.append("private network access is not allowed")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(403, "cors_refused", f"CORS preflight refused: {'; '.join(refused)}; send the request "
                              "from an allowed origin, with only the methods and headers the service allows",
                              headers=headers)
