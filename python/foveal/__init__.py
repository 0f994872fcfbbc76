"""foveal: predict where people look at an image, and turn it into numbers a creative team can act on.

>>> import foveal
>>> engine = foveal.Engine()                      # the default model on ONNX Runtime (CPU)
>>> smap = engine.predict("creative.png")         # SaliencyMap: .prob sums to 1
>>> smap.share([40, 500, 220, 80])                # share of attention inside a box [x, y, w, h]
"""
import os

# ONNX Runtime's Linux and macOS wheels (1.32 here) collect telemetry for upload to Microsoft and keep a device
# id and an event cache under ~/.cache and $TMPDIR; ad creatives and their models are a client's business, so it is
# off unless the user says otherwise. Only read when onnxruntime is first imported, so it goes first.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from ._version import __version__  # noqa: E402
from .backends import available_backends
from .client import Client
from .detect import detect_elements
from .device_map import DeviceSaliencyMap, box_stats_batch
from .engine import Engine
from .errors import (BackendUnavailableError, DetectorUnavailableError, ElementSpecError, FormatMismatchError,
                     FovealError, ImageError, InputError, ModelError, ServiceError, TooManyPixelsError,
                     UnknownElementError)
from .imageio import load_image
from .models import DEFAULT_MODEL, available_models, load_card
from .saliency_map import SaliencyMap

__all__ = [
    "__version__", "Engine", "SaliencyMap", "load_image", "load_card", "available_models", "available_backends",
    "DEFAULT_MODEL", "FovealError", "InputError", "ImageError", "TooManyPixelsError", "ElementSpecError", "ModelError",
    "FormatMismatchError", "UnknownElementError",
    "BackendUnavailableError", "DetectorUnavailableError", "Client", "ServiceError", "detect_elements",
    "DeviceSaliencyMap", "box_stats_batch",
]
