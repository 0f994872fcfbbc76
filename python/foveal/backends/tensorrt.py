"""The TensorRT backend: the model's ONNX graph compiled to a TensorRT engine, run on CuPy buffers.

The engine is built once per (model sha256, TensorRT version, GPU name and compute capability, precision,
profiles) and kept as a plan file in the cache folder (``$FOVEAL_TRT_CACHE``, else ``$XDG_CACHE_HOME/foveal/trt``,
else ``~/.cache/foveal/trt``), beside a timing cache per TensorRT version and GPU model that makes later builds fast.
Batches run asynchronously on the backend's own stream (``set_tensor_address`` + ``execute_async_v3``); batch 1
replays a captured CUDA graph. Not exercised by CI (no GPU there): see docs/GPU.md.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from .. import gpu
from ..errors import BackendUnavailableError, InputError, ModelError
from ..fileio import atomic_write
from ..models import ModelCard
from .trt_builder import build_plan, cache_key, choose_profile, describe, precision, profiles_for

log = logging.getLogger("foveal")


def cache_dir() -> Path:
    """Where plans and timing caches live (see the module docstring for the lookup order)."""
    if os.environ.get("FOVEAL_TRT_CACHE"):
        return Path(os.environ["FOVEAL_TRT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "foveal" / "trt"


def _write(path: Path, data: bytes) -> None:
    """Cache ``data`` at ``path``; a cache that cannot be written costs a rebuild next time, not this run."""
    try:
        with atomic_write(path, "wb") as fh:
            fh.write(data)
    except InputError as exc:
        log.warning("foveal: TensorRT cache not written (%s); set FOVEAL_TRT_CACHE to a writable folder", exc)


class TensorRTBackend:
    """Run a model card's ONNX graph with TensorRT on the current CUDA device.

    Args:
        card: the model.
        max_batch: largest batch the engine accepts; opt_batch: the batch size TensorRT tunes for.
        fp16: let TensorRT 10 pick FP16 kernels (TensorRT 11 runs the graph's own types; see trt_builder).
        cuda_graph: replay a captured CUDA graph for batches of one.
        cache: folder for plans and timing caches (default :func:`cache_dir`).
    """

    name = "tensorrt"
    on_gpu = True

    @classmethod
    def unavailable(cls) -> str | None:
        # The GPU check comes first: no TensorRT object may be created on a machine without one.
        why = gpu.unavailable()
        if why is not None:
            return why
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed: pip install tensorrt-cu13"
        return None

    def __init__(self, card: ModelCard, *, max_batch: int = 64, opt_batch: int = 8, fp16: bool = True,
                 cuda_graph: bool = True, cache: str | os.PathLike | None = None) -> None:
        if card.precision == "int8":
            # ONNX Runtime's QDQ graph (uint8 activations, int32 biases) is outside TensorRT's symmetric int8
            # support, and a TensorRT-friendly int8 graph runs 4x slower on ONNX Runtime's CPU kernels.
            raise BackendUnavailableError("tensorrt backend: builds from the fp32 graph (FP16); the int8 graph is "
                                          "for ONNX Runtime's CPU provider")
        why = self.unavailable()
        if why is not None:
            raise BackendUnavailableError(f"tensorrt backend: {why}")
        import cupy
        import tensorrt as trt

        self._cupy, self._trt = cupy, trt
        index = cupy.cuda.runtime.getDevice()
        props = cupy.cuda.runtime.getDeviceProperties(index)
        gpu_name, cc = props["name"].decode(), f"sm{props['major']}{props['minor']}"
        self.device = f"cuda:{index} ({gpu_name})"
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._input, self._output = card.input.name, card.output_name
        self._profiles = profiles_for(card, max_batch, opt_batch)
        self._cuda_graph = cuda_graph
        folder = Path(cache) if cache is not None else cache_dir()
        build_precision = precision(trt, fp16)
        self.precision = "fp16" if build_precision == "fp16" else card.precision
        key = cache_key(card.sha256, describe(trt), gpu_name, cc, self._profiles, build_precision)
        self._plan_path = folder / f"{card.name}-{key}.plan"
        # Per GPU model, not only per compute capability: TensorRT refuses a timing cache made on another device.
        gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-") or "gpu"
        self._timing_path = folder / f"timing-{trt.__version__}-{cc}-{gpu_slug}.cache"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = None
        if self._plan_path.is_file():
            engine = self._runtime.deserialize_cuda_engine(self._plan_path.read_bytes())
            if engine is None:
                log.warning("foveal: cached TensorRT plan %s is unusable; rebuilding", self._plan_path)
        if engine is None:
            engine = self._build(card, fp16)
        self._engine = engine
        # The graph's own types: an ONNX graph may take or give float16, which TensorRT keeps.
        self._in_dtype, self._out_dtype = (self._io_dtype(name) for name in (self._input, self._output))
        self._contexts: dict[int, Any] = {}
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any, Any]] = {}

    def _build(self, card: ModelCard, fp16: bool) -> Any:
        timing = self._timing_path.read_bytes() if self._timing_path.is_file() else b""
        start = time.perf_counter()
        plan, timing = build_plan(self._trt, card.onnx_path, self._input, self._profiles, fp16=fp16,
                                  timing_cache=timing)
        log.info("foveal: built TensorRT engine for %s in %.1f s -> %s", card.name, time.perf_counter() - start,
                 self._plan_path)
        _write(self._plan_path, plan)
        _write(self._timing_path, timing)  # type: ignore[arg-type] - bytes whenever a cache was passed
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ModelError(f"TensorRT built but cannot load the engine for {card.name}")
        return engine

    def _io_dtype(self, name: str) -> Any:
        kinds = {self._trt.DataType.FLOAT: self._cupy.float32, self._trt.DataType.HALF: self._cupy.float16}
        dtype = self._engine.get_tensor_dtype(name)
        if dtype not in kinds:
            raise ModelError(f"the TensorRT engine's tensor {name!r} is {dtype}; foveal feeds and reads float32 or "
                             "float16 tensors")
        return kinds[dtype]

    def _context(self, profile: int) -> Any:
        ctx = self._engine.create_execution_context()
        ctx.set_optimization_profile_async(profile, self.stream.ptr)
        return ctx

    def _execute(self, ctx: Any, batch: Any, out: Any) -> None:
        ctx.set_input_shape(self._input, tuple(batch.shape))
        ctx.set_tensor_address(self._input, batch.data.ptr)
        ctx.set_tensor_address(self._output, out.data.ptr)
        if not ctx.execute_async_v3(self.stream.ptr):
            raise ModelError(f"TensorRT failed on a {tuple(batch.shape)} batch (see the TensorRT log above)")

    def _output_shape(self, ctx: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        ctx.set_input_shape(self._input, shape)
        return tuple(ctx.get_tensor_shape(self._output))

    def run(self, batch: Any) -> Any:
        """float32 N×3×H×W (CuPy or NumPy) → CuPy float32 N×1×h×w, ordered after the caller's current stream and
        before its later work."""
        cupy = self._cupy
        caller = cupy.cuda.get_current_stream()
        batch = cupy.ascontiguousarray(cupy.asarray(batch), dtype=self._in_dtype)
        shape = tuple(batch.shape)
        profile = choose_profile(self._profiles, shape)  # type: ignore[arg-type]
        self.stream.wait_event(caller.record())
        with self.stream:
            if self._cuda_graph and shape[0] == 1:
                out = self._replay(profile, batch)
            else:
                if profile not in self._contexts:
                    self._contexts[profile] = self._context(profile)
                ctx = self._contexts[profile]
                out = cupy.empty(self._output_shape(ctx, shape), dtype=self._out_dtype)
                self._execute(ctx, batch, out)
            out = out.astype(cupy.float32, copy=False)
        caller.wait_event(self.stream.record())
        return out

    def _replay(self, profile: int, batch: Any) -> Any:
        """Run a batch of one through a CUDA graph captured for its shape, on a context of its own (a graph holds
        its context's shapes and addresses fixed)."""
        cupy, shape = self._cupy, tuple(batch.shape)
        if shape not in self._graphs:
            ctx = self._context(profile)
            static_in = cupy.empty(shape, dtype=self._in_dtype)
            static_out = cupy.empty(self._output_shape(ctx, shape), dtype=self._out_dtype)
            self._execute(ctx, static_in, static_out)  # TensorRT does its lazy setup outside the capture
            self.stream.begin_capture()
            try:
                self._execute(ctx, static_in, static_out)
            finally:
                graph = self.stream.end_capture()
            self._graphs[shape] = (ctx, graph, static_in, static_out)
        _, graph, static_in, static_out = self._graphs[shape]
        static_in[...] = batch
        graph.launch(self.stream)
        return static_out.astype(cupy.float32)  # a copy: the next replay overwrites static_out
