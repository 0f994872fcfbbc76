"""ONNX → TensorRT plan, shared by the ``tensorrt`` backend and the GPU-less build check with TensorRT for RTX.

Both ``tensorrt`` (10.x/11.x) and ``tensorrt_rtx`` expose the same builder API for what foveal needs (OnnxParser,
optimisation profiles, timing cache, build_serialized_network); the module object is passed in, so nothing here
imports either. Where they differ: RTX can target compute capabilities other than the build machine's
(``compute_capabilities``) and has no timing cache (``timing_cache=None``), and the FP16 builder flag exists only
in TensorRT 10 (11 and RTX are strongly typed: a network runs in the precision its ONNX graph declares).

Profiles: every padded input at a model's working size has its long side ``L = ceil(working_size / pad) * pad``
(geometry.plan resizes the long side to the working size), so three profiles cover them all: square (L×L),
landscape (H < L = W) and portrait (W < L = H), each with a dynamic batch 1..max_batch.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import InputError, ModelError
from ..models import ModelCard

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile for the NCHW input: inclusive shape range and the shape tuned for."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Shape) -> bool:
        return all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))


def profiles_for(card: ModelCard, max_batch: int = 64, opt_batch: int = 8) -> list[Profile]:
    """Square, landscape and portrait profiles covering every padded input size of ``card`` at its working size."""
    if not 1 <= opt_batch <= max_batch:
        raise InputError(f"need 1 <= opt_batch <= max_batch, got opt_batch={opt_batch}, max_batch={max_batch}")
    pad = card.input.pad_multiple
    long = -(-card.input.working_size // pad) * pad
    short_opt = max(pad, round(long * 3 / 4 / pad) * pad)  # 4:3, the commonest photo aspect
    return [
        Profile("square", (1, 3, long, long), (opt_batch, 3, long, long), (max_batch, 3, long, long)),
        Profile("landscape", (1, 3, pad, long), (opt_batch, 3, short_opt, long), (max_batch, 3, long, long)),
        Profile("portrait", (1, 3, long, pad), (opt_batch, 3, long, short_opt), (max_batch, 3, long, long)),
    ]


def choose_profile(profiles: list[Profile], shape: Shape) -> int:
    """Index of the first profile whose range holds ``shape`` (square before the others for L×L)."""
    for i, profile in enumerate(profiles):
        if profile.contains(shape):
            return i
    ranges = ", ".join(f"{p.name} {p.min}..{p.max}" for p in profiles)
    raise InputError(f"batch shape {shape} fits no TensorRT profile ({ranges}); use a batch size within the "
                     "profiles' maximum and the model card's working size")


def cache_key(model_sha256: str, trt_version: str, device: str, compute_capability: str,
              profiles: list[Profile], precision: str) -> str:
    """Hex digest naming a plan: anything that changes the engine TensorRT builds changes the key."""
    identity = {"model": model_sha256, "tensorrt": trt_version, "device": device, "cc": compute_capability,
                "precision": precision, "profiles": [[p.name, p.min, p.opt, p.max] for p in profiles]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def precision(trt: ModuleType, fp16: bool) -> str:
    """What the build will run in: ``fp16`` via TensorRT 10's builder flag, else the ONNX graph's own types."""
    return "fp16" if fp16 and hasattr(trt.BuilderFlag, "FP16") else "onnx-types"


def build_plan(trt: ModuleType, onnx_path: Path, input_name: str, profiles: list[Profile], *, fp16: bool = True,
               timing_cache: bytes | None = None, compute_capabilities: tuple[str, ...] = (),
               workspace_bytes: int = 2 << 30) -> tuple[bytes, bytes | None]:
    """Parse ``onnx_path`` and build a serialized engine; returns (plan, updated timing cache or None).

    ``timing_cache``: a serialized timing cache (``b""`` to start one), or None to use none (TensorRT for RTX,
    where timing caches are deprecated no-ops). ``compute_capabilities`` (TensorRT for RTX only) are
    ``trt.ComputeCapability`` member names such as ``"SM86"``; empty means the GPU this runs on. Raises ModelError
    when the graph cannot be parsed or built.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision(trt, fp16) == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if compute_capabilities:
        config.num_compute_capabilities = len(compute_capabilities)
        for i, cc in enumerate(compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, cc), i)
    for p in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache)
        config.set_timing_cache(cache, False)  # False: a cache from another GPU is not used (files are per GPU anyway)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT could not build an engine for {onnx_path.name} with profiles "
                         f"{[p.name for p in profiles]} (see the TensorRT log above)")
    if timing_cache is None:
        return bytes(plan), None
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def describe(trt: Any) -> str:
    """``tensorrt 10.13.0`` / ``tensorrt_rtx 1.7.1``: which TensorRT a plan came from, for keys and logs."""
    return f"{trt.__name__} {trt.__version__}"
