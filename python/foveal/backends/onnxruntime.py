"""The CPU backend: ONNX Runtime's CPU execution provider."""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import BackendUnavailableError, InputError, ModelError, one_line
from ..models import ModelCard


class OnnxRuntimeBackend:
    name = "onnxruntime"
    device = "cpu"
    on_gpu = False

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            _interrupted(exc)
            return f"onnxruntime is not installed ({exc}); pip install onnxruntime"
        return None

    def __init__(self, card: ModelCard, threads: int | None = None) -> None:
        """``threads``: ONNX Runtime's intra-op threads; default (None or 0) the kernels' count
        (:func:`foveal.cpu.thread_count`: ``FOVEAL_NUM_THREADS``, else the CPUs this process may use)."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            _interrupted(exc)
            raise BackendUnavailableError(f"onnxruntime is not installed ({exc})") from None
        from .. import cpu

        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                    or not 0 <= threads <= cpu.MAX_THREADS):
            raise InputError(f"onnxruntime backend: threads must be a whole number from 0 (foveal's thread count) to "
                             f"{cpu.MAX_THREADS}, got {threads!r}")
        # ORT's own default counts the machine's cores, not a container's CPU quota or FOVEAL_NUM_THREADS.
        self.threads = int(threads or cpu.thread_count())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Fatal only: ORT logs a failed run in colour before raising, and foveal raises it as one line itself;
        # its warnings about unused initialisers are noise to a user.
        options.log_severity_level = 4
        options.intra_op_num_threads = self.threads
        # ORT's pool threads otherwise spin for a while after each run, on the cores that foveal's own pre- and
        # postprocessing threads (and any other session) need next: end-to-end predict was up to 1.4x slower with
        # spinning on 2 cores, and the network alone no faster (docs/PERFORMANCE.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(card.onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own unrelated exception types
            reason = one_line(str(exc)).rstrip(".")
            if "registered function/op" in reason or "opset" in reason.lower():
                raise ModelError(f"onnxruntime {ort.__version__} cannot run {card.onnx_path.name}: it uses an operator "
                                 f"or opset this onnxruntime does not have ({reason[-200:]}); export it with standard "
                                 "ONNX operators at an opset it runs (docs/MODEL_CONTRACT.md)") from None
            raise ModelError(f"onnxruntime cannot load {card.onnx_path.name}: {reason}; is it an ONNX model "
                             "(docs/MODEL_CONTRACT.md), whole and not renamed from another format?") from None
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if card.input.name not in inputs or card.output_name not in outputs:
            raise ModelError(
                f"{card.onnx_path.name}: expected input {card.input.name!r} and output {card.output_name!r}, "
                f"the graph has inputs {inputs} and outputs {outputs}; see docs/MODEL_CONTRACT.md"
            )
        spec = next(i for i in self._session.get_inputs() if i.name == card.input.name)
        breach = _input_breach(spec.type, spec.shape, len(inputs))
        if breach:
            raise ModelError(f"{card.onnx_path.name}: its input {spec.name!r} {breach}; see docs/MODEL_CONTRACT.md")
        self._input, self._output, self._model = card.input.name, card.output_name, card.name
        self._pad_multiple = card.input.pad_multiple
        self._card = card
        self.precision = card.precision

    def lanes(self) -> list[OnnxRuntimeBackend]:
        """One single-threaded twin session per thread of this one, for ``Engine.predict_batch`` to run different
        images side by side: on CPUs that beats splitting each image over threads (batching does not pay either),
        and the maps are bit for bit the same (tests/test_engine.py checks it). No more lanes than the CPUs the
        process may use: a thread count set above them (``FOVEAL_NUM_THREADS=999``) made a session per thread, some
        6 MB each, for no more images a second."""
        from .. import cpu

        count = min(self.threads, cpu.usable_cpus())
        if count < 2:
            return []
        self._card.check_unchanged()  # the twins read the file again, once for all of them
        return [OnnxRuntimeBackend(self._card, threads=1) for _ in range(count)]

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            (out,) = self._session.run([self._output], {self._input: batch})
        except Exception as exc:  # noqa: BLE001
            # ORT's words end with the failing node's own reason; the rest is its source file and call chain.
            reason = one_line(str(exc)).rsplit("Status Message: ", 1)[-1][-300:]
            height, width = batch.shape[2:4]
            raise ModelError(f"model {self._model!r} failed in onnxruntime on a {height}x{width} input ({reason}); "
                             "the contract has a graph take any height and width that are multiples of its card's "
                             f"pad_multiple ({self._pad_multiple}): raise pad_multiple if the graph needs larger "
                             "ones (docs/MODEL_CONTRACT.md)") from None
        # Integer or float64 output is passed on as it is: the Engine refuses what breaks the contract.
        return out.astype(np.float32, copy=False) if out.dtype == np.float16 else out


def _input_breach(kind: str, shape: list, inputs: int) -> str | None:
    """What a graph input declared as ``kind`` and ``shape`` breaks of the contract (the only input, float32
    N×3×H×W with N, H and W dynamic), if anything: else each image would fail on it with ONNX Runtime's words."""
    if inputs != 1:
        return f"is one of {inputs} inputs the graph needs; the contract is a single input"
    if kind != "tensor(float)":
        return f"is {kind}, not float32"
    if not shape:  # declared without a shape: any size, which the contract allows
        return None
    if len(shape) != 4:
        return f"has shape {shape}, not N×3×H×W"
    if shape[3] == 3 and shape[1] != 3:
        return f"has shape {shape}, channels last; the contract is N×3×H×W"
    if isinstance(shape[1], int) and shape[1] != 3:
        return f"has {shape[1]} channels, not 3"
    fixed = [axis for axis, dim in zip("NHW", (shape[0], shape[2], shape[3])) if isinstance(dim, int)]
    if fixed:
        return (f"has shape {shape}: {', '.join(fixed)} fixed; N, H and W must be dynamic (each image is sized "
                "to its own aspect ratio)")
    return None


def _interrupted(exc: ImportError) -> None:
    """Re-raise the Ctrl-C behind ``exc``: a C extension interrupted while it initialises reports ImportError
    ("initialization failed") caused by the KeyboardInterrupt, which is no missing package."""
    if isinstance(exc.__cause__, KeyboardInterrupt):
        raise exc.__cause__
