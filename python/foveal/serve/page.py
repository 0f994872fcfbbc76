"""The web page's files (``serve/static/``), served at ``/`` with headers that lock the page to its own origin.

The page is plain ES modules and CSS with no inline script or style in its markup, so a strict Content Security
Policy costs nothing: scripts, styles and requests come only from the service itself (the page works air-gapped),
images also from ``blob:`` (the what-if's edited creative) and ``data:``, and no other site may frame it.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles

from ..scoring.report import DOCUMENT_CSP

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY"}
#: The API's HTML answers (``/v1/score?format=html``, ``/v1/compare?format=html``): pages built from the caller's
#: names, on this origin, that a cross-site form could ask for; no script may ever run in them.
DOCUMENT_HEADERS = {**HEADERS, "Content-Security-Policy": DOCUMENT_CSP + "; frame-ancestors 'none'"}


class PageFiles(StaticFiles):
    """StaticFiles with :data:`HEADERS` on every response (``.js`` goes out as ``text/javascript``).

    Mounted at ``/``, it would answer an API path asked with the wrong method (``GET /v1/predict``) with 404;
    ``api_routes`` lets such a request reach its route, whose answer is the API's 405 with ``Allow``.
    """

    def __init__(self, *, api_routes: Sequence[BaseRoute] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_routes = tuple(api_routes)

    async def __call__(self, scope, receive, send) -> None:
        for route in self.api_routes:
            match, child = route.matches(scope)
            if match == Match.PARTIAL:
                await route.handle({**scope, **child}, receive, send)
                return
        # Whole files only (HTTP lets a server ignore Range): Starlette answered a bad Range with a plain-text 400
        # or an empty 416, not the API's JSON errors, and the page's small files gain nothing from parts.
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", ()) if k != b"range"]}
        await super().__call__(scope, receive, send)

    async def get_response(self, path, scope):
        if scope["method"] not in ("GET", "HEAD") and not self._served(path):
            # StaticFiles answers 405 "use GET" before looking: a POST to a mistyped API path must be a 404
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        if "location" in response.headers:
            # A folder's redirect (/js -> /js/) was built from the Host header (http://evil.example/js/, a cache
            # poisoner's tool) and always http: the path alone is a valid Location (RFC 9110 10.2.2).
            target = urlsplit(response.headers["location"])
            response.headers["location"] = urlunsplit(("", "", target.path, target.query, ""))
        if "accept-ranges" in response.headers:  # whole files only (above): no parts on offer
            del response.headers["accept-ranges"]
        return response

    def _served(self, path: str) -> bool:
        """Whether a GET of ``path`` finds something: a file, or a folder with its index page (a folder without one
        is a 404 to GET, so other methods must not be told to use GET there)."""
        found = self.lookup_path(path)[1]
        if found is not None and stat.S_ISDIR(found.st_mode):
            found = self.lookup_path(os.path.join(path, "index.html"))[1] if self.html else None
        return found is not None
