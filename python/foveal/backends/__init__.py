"""Network backends: swappable executors of a model's ONNX graph, chosen in priority order.

Each backend module defines one class with ``name``, ``device``, ``on_gpu``, ``precision``, a classmethod
``unavailable() -> str | None`` (why it cannot run here, cheaply, without creating sessions) and ``run(batch) ->
log_density``. ``run`` takes float32 N×3×H×W and returns float32 N×1×h×w: NumPy arrays for CPU backends, CuPy
arrays when ``on_gpu``. A backend's options are its constructor's keyword arguments after the card
(:func:`backend_options`); :func:`select` hands each backend only its own, and falls back to the next backend only
when one raises :class:`BackendUnavailableError` (any other error is the caller's to see).
"""
from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any, Mapping, Protocol, Sequence

from ..errors import BackendUnavailableError, InputError
from ..models import ModelCard

log = logging.getLogger("foveal")

# Priority order for device="auto": the fastest first.
_REGISTRY: dict[str, tuple[str, str]] = {
    "tensorrt": ("foveal.backends.tensorrt", "TensorRTBackend"),
    "torch": ("foveal.backends.torch_cuda", "TorchBackend"),
    "onnxruntime": ("foveal.backends.onnxruntime", "OnnxRuntimeBackend"),
}
_DEVICES: dict[str, tuple[str, ...]] = {
    "auto": ("tensorrt", "torch", "onnxruntime"),
    "cuda": ("tensorrt", "torch"),
    "gpu": ("tensorrt", "torch"),
    "cpu": ("onnxruntime",),
}


class Backend(Protocol):
    name: str
    device: str
    on_gpu: bool
    precision: str  # "fp32", "fp16" or "int8": the arithmetic the network runs in

    def run(self, batch: Any) -> Any:
        """float32 N×3×H×W → float32 N×1×h×w log-density."""


def _backend_class(name: str) -> type:
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def backend_options(name: str) -> tuple[str, ...]:
    """The options backend ``name`` takes (its constructor's keyword arguments after the model card)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InputError(f"backend {name!r}: no such backend; choose one of {', '.join(_REGISTRY)}")
    try:
        parameters = inspect.signature(_backend_class(name).__init__).parameters.values()
    except ImportError:
        return ()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in kinds and p.name not in ("self", "card"))


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine, or None if it can."""
    try:
        return _backend_class(name).unavailable()
    except ImportError as exc:
        return f"cannot import {_REGISTRY[name][0]}: {exc}"


def available_backends() -> list[str]:
    """Backends that can run here, fastest first."""
    return [name for name in _REGISTRY if unavailable_reason(name) is None]


def resolve(device: str | Sequence[str]) -> tuple[str, ...]:
    """Turn ``device`` ("auto", "cpu", "cuda", a backend name, or a list of names) into backend names to try."""
    names = (device,) if isinstance(device, str) else tuple(device) if isinstance(device, (list, tuple)) else None
    if names is None or not all(isinstance(item, str) for item in names):
        raise InputError(f"device: expected a name ({', '.join([*_DEVICES, *_REGISTRY])}) or a list of backend "
                         f"names, got {device!r}")
    order: list[str] = []
    for item in names:
        expanded = _DEVICES.get(item, (item,))
        for name in expanded:
            if name not in _REGISTRY:
                raise InputError(f"unknown device/backend {item!r}: choose from "
                                 f"{', '.join([*_DEVICES, *_REGISTRY])}")
            if name not in order:
                order.append(name)
    if not order:
        raise InputError("device: empty backend list")
    return tuple(order)


def select(card: ModelCard, device: str | Sequence[str] = "cpu", strict: bool = False,
           graphs: Mapping[str, ModelCard] | None = None, **options: Any) -> Backend:
    """Create the first backend in ``device``'s order that can run ``card`` here.

    ``graphs`` maps a backend name to the variant of ``card`` it should run instead (the int8 graph for
    onnxruntime). Each backend gets the ``options`` it takes (``fp16`` goes to tensorrt and torch, not to
    onnxruntime); an option no backend in the order takes is an InputError naming what each one takes. Only
    :class:`BackendUnavailableError` moves on to the next backend; falling back past an explicitly named backend is
    logged once; ``strict=True`` turns it into an error.
    """
    order = resolve(device)
    accepted = {name: backend_options(name) for name in order}
    unknown = sorted(set(options) - {option for names in accepted.values() for option in names})
    if unknown:
        takes = "; ".join(f"{name} takes {', '.join(names) or 'none'}" for name, names in accepted.items())
        raise InputError(f"backend option {unknown[0]!r} is taken by no backend tried for device={device!r} "
                         f"({takes})")
    reasons = []
    for name in order:
        reason = unavailable_reason(name)
        if reason is None:
            own = {key: value for key, value in options.items() if key in accepted[name]}
            try:
                backend = _backend_class(name)((graphs or {}).get(name, card), **own)
            except BackendUnavailableError as exc:
                reason = str(exc)
            else:
                if reasons and device != "auto":
                    log.warning("foveal: fell back to %s (%s)", name, "; ".join(reasons))
                log.info("foveal: running %s on %s via %s", card.name, backend.device, name)
                return backend
        reasons.append(f"{name}: {reason}")
        if strict:
            break
    raise BackendUnavailableError(f"no backend can run {card.name!r} for device={device!r}: " + "; ".join(reasons))
