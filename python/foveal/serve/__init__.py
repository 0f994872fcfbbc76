"""``foveal serve``: the HTTP service (``pip install "foveal[serve]"``).

>>> from foveal.serve import create_app, ServeConfig
>>> app = create_app(ServeConfig(max_batch=8))      # any ASGI server: uvicorn, hypercorn, mounted in yours

docs/SERVING.md has the API reference, deployment, batcher tuning, the concurrency contract and the metrics.
"""
from .app import ServeConfig, create_app
from .server import serve

__all__ = ["ServeConfig", "create_app", "serve"]
