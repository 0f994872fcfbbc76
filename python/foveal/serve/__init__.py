"""``foveal serve``: the HTTP service (``pip install "foveal[serve]"``).

>>> from foveal.serve import create_app, ServeConfig
>>> app = create_app(ServeConfig(max_batch=8))      # any ASGI server: uvicorn, hypercorn, mounted in yours

docs/SERVING.md has the API reference, deployment, batcher tuning, the concurrency contract and the metrics.
"""
from __future__ import annotations

from typing import Any

from ..errors import FovealError

__all__ = ["ServeConfig", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:  # loaded on first use, so that a missing extra is one line saying how to get it
        from . import app, server
    except ImportError as exc:
        raise FovealError(f"foveal.serve needs the serve extra ({exc.name} is missing): "
                          'pip install "foveal[serve]"') from None
    return getattr(server if name == "serve" else app, name)
