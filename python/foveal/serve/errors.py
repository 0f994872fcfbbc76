"""Every exception → one HTTP status and a JSON body ``{"error": {"code", "message"}}``; never a traceback."""
from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..errors import (BackendUnavailableError, DetectorUnavailableError, ElementSpecError, FormatMismatchError,
                      FovealError, ImageError, InputError, ModelError, ServiceError, TooManyPixelsError)

log = logging.getLogger("foveal.serve")

#: (class, status, code), most specific first.
FOVEAL_STATUS: tuple[tuple[type[FovealError], int, str], ...] = (
    (TooManyPixelsError, 413, "too_many_pixels"),
    (ImageError, 400, "invalid_image"),
    (ElementSpecError, 422, "invalid_elements"),
    (FormatMismatchError, 400, "format_mismatch"),
    (InputError, 400, "invalid_input"),
    (BackendUnavailableError, 503, "backend_unavailable"),
    (DetectorUnavailableError, 501, "detection_unavailable"),  # the server lacks the detect extra
    (ModelError, 500, "model_error"),
)


def retry_after_value(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds (RFC 9110's delay-seconds), at least 1."""
    return str(max(1, round(seconds)))


def error_response(status: int, code: str, message: str, retry_after: float | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = retry_after_value(retry_after)
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(exc: FovealError) -> tuple[int, str]:
    if isinstance(exc, ServiceError):
        return exc.status or 500, exc.code
    for cls, status, code in FOVEAL_STATUS:
        if isinstance(exc, cls):
            return status, code
    return 400, "invalid_request"


async def foveal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FovealError)
    status, code = status_of(exc)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, TooManyPixelsError):  # the library's advice (raise max_pixels) is the operator's, not a client's
        message = f"the image is {exc.detail}, over this service's limit of {exc.limit_text}; downscale it"
    return error_response(status, code, message, getattr(exc, "retry_after", None))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = str(exc.detail)
    headers = dict(exc.headers or {})
    allowed = headers.get("Allow")
    if exc.status_code == 405 and allowed:
        methods = [m.strip() for m in allowed.split(",")]
        if "GET" in methods and "HEAD" not in methods:  # HEAD is a route of its own wherever GET is (create_app)
            headers["Allow"] = allowed = ", ".join([*methods, "HEAD"])
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    elif exc.status_code == 404:
        # where the app is mounted (parent.mount("/foveal", app)), its schema is below the mount point too
        message = (f"nothing is at {request.url.path}; the API's routes are listed at "
                   f"{request.scope.get('root_path', '')}/openapi.json")
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, headers=headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid value')}")


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client closed the connection before its request was read: nobody to answer, nothing to log.  The status
    (nginx's 499, "client closed request") is only what /metrics counts."""
    return Response(status_code=499)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has the details")


HANDLERS = {FovealError: foveal_error, HTTPException: http_error, RequestValidationError: validation_error,
            ClientDisconnect: client_gone, Exception: internal_error}
