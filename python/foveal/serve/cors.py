"""CORS for the service: Starlette's layer, with a refused preflight answered in the API's JSON error body (Starlette
answers it in plain text) and saying what was refused."""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from .errors import error_response


class CORS(CORSMiddleware):
    """A preflight whose origin, method, headers or private-network request is not allowed is answered 403
    ``cors_refused``: without the ``Access-Control-Allow-Origin`` that would let the browser go on."""

    def preflight_response(self, request_headers: Headers) -> Response:
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
