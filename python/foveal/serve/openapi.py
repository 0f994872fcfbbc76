"""The service's OpenAPI schema: FastAPI's, completed with what FastAPI cannot see from the routes.

Every refusal is ``{"error": {"code", "message"}}`` (docs/SERVING.md lists the codes), not FastAPI's 422
``HTTPValidationError``; a route that reads its query and body by hand declares neither the errors it answers nor
the header ``X-Deadline-Ms``; and the API keys the guard checks are a security scheme. A client generated from the
schema can then read every answer it gets.
"""
from __future__ import annotations

import copy
from typing import Any

from .guard import OPEN_PATHS

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string", "description": "stable, machine-readable (docs/SERVING.md)"},
                   "message": {"type": "string", "description": "one line saying what to do"}}}}}

#: What any request may be answered, whatever its route: by the connection (a garbled request, headers too slow or
#: too large), the host check, or an unexpected failure.
# The connection's and the guard's refusals, which come before any route is chosen.
_ANY = {400: ("bad_request", "unknown_host", "invalid_input"), 408: ("request_timeout",),
        413: ("body_too_large",), 415: ("unsupported_media_type",), 431: ("headers_too_large",),
        500: ("internal_error",), 501: ("not_implemented",)}
#: What a POST that runs the network may answer besides 200 and :data:`_ANY`: status → error codes.
_RUNS = {400: ("invalid_image", "invalid_input"), 413: ("body_too_large", "too_many_pixels"),
         415: ("unsupported_media_type",), 500: ("model_error",), 501: ("not_implemented",),
         503: ("queue_full", "not_ready", "shutting_down"), 504: ("deadline_exceeded",)}
#: Route by route, what it answers on top of :data:`_RUNS`.
_ROUTE = {"/v1/score": {422: ("invalid_elements", "invalid_request")},
          "/v1/compare": {400: ("format_mismatch",), 422: ("invalid_elements", "invalid_request")},
          "/v1/whatif": {422: ("invalid_elements", "invalid_request")},
          "/v1/detect": {501: ("detection_unavailable",)},
          "/readyz": {503: ("not_ready", "shutting_down")}}
_KEYS = {401: ("unauthorized",), 403: ("forbidden",)}

DEADLINE = {"name": "X-Deadline-Ms", "in": "header", "required": False,
            # text as the service reads it: a number formatted with an exponent (Java's 1.0E7) is refused
            "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["250", "1500.5"]},
            "description": "504 deadline_exceeded unless the maps (/v1/detect: the detection) are ready this many "
                           "milliseconds after the request arrives; scoring, drawing and encoding after them "
                           "are not cut short. A plain decimal above 0 and below 1e12 (no sign, no exponent)"}

RETRY_AFTER = {"schema": {"type": "integer", "minimum": 1}, "description": "seconds to wait before retrying"}


def complete(schema: dict[str, Any], *, keys: bool) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the error answers, ``X-Deadline-Ms`` and, when the service checks ``keys``,
    its security schemes."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR
    if keys:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                         "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            errors: dict[int, tuple[str, ...]] = {}
            _add(errors, _ANY)
            if method == "post":
                _add(errors, _RUNS)
                operation.setdefault("parameters", []).append(DEADLINE)
            _add(errors, _ROUTE.get(path, {}))
            if keys and path not in OPEN_PATHS:
                _add(errors, _KEYS)
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation error, which the service never sends
            for status, codes in sorted(errors.items()):
                responses[str(status)] = {
                    "description": " or ".join(f"`{code}`" for code in codes),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                if status == 503:  # every 503 asks the client to wait before it retries
                    responses["503"]["headers"] = {"Retry-After": RETRY_AFTER}
    return schema


def _add(errors: dict[int, tuple[str, ...]], more: dict[int, tuple[str, ...]]) -> None:
    for status, codes in more.items():
        errors[status] = tuple(dict.fromkeys(errors.get(status, ()) + codes))
