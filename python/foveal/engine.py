"""Engine: one model on one backend, turning images into SaliencyMaps."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from . import backends, cpu
from ._version import __version__
from .errors import InputError
from .geometry import Plan, plan
from .imageio import DEFAULT_MAX_PIXELS, DecodedImage, ImageLike, decode
from .models import PRECISIONS, ModelCard, load_card
from .saliency_map import SaliencyMap


class Engine:
    """Predict fixation probability maps with a saliency model.

    Args:
        model: ``"default"``, a shipped model's name (see :func:`foveal.available_models`) or a path to an ONNX file
            obeying docs/MODEL_CONTRACT.md.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (TensorRT → torch → ONNX Runtime) or a list of backend names.
        precision: ``"auto"``: each backend's fastest graph: the model's int8 graph on ONNX Runtime, its fp16
            graph on TensorRT, fp16 in torch (from the fp32 weights); ``"fp32"``: the float graph everywhere;
            ``"fp16"``: the fp16 graph (torch: its own fp16); ``"int8"``: the int8 graph, which only ONNX Runtime
            runs (GPU backends refuse it).
        max_pixels: images larger than this are refused before decoding.
        blur_sigma: Gaussian blur (output pixels) applied to the upsampled log-density; defaults to the card's.
        strict: fail instead of falling back when the first backend cannot run.
    """

    def __init__(self, model: str = "default", device: str | Sequence[str] = "cpu", *, precision: str = "auto",
                 max_pixels: int = DEFAULT_MAX_PIXELS, blur_sigma: float | None = None, strict: bool = False,
                 **backend_options: Any) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model: ModelCard = load_card(model)
        graphs = _graphs(self.model, precision)
        self._backend = backends.select(self.model, device, strict=strict, graphs=graphs, **backend_options)
        self.graph: ModelCard = graphs.get(self._backend.name, self.model)
        self.max_pixels = max_pixels
        self.blur_sigma = self.model.blur_sigma if blur_sigma is None else float(blur_sigma)

    def __repr__(self) -> str:
        return (f"Engine(model={self.model.name!r}, backend={self.backend!r}, device={self._backend.device!r}, "
                f"precision={self.precision!r})")

    @property
    def backend(self) -> str:
        """Name of the backend that actually runs the network."""
        return self._backend.name

    @property
    def precision(self) -> str:
        """Arithmetic the network runs in: ``"fp32"``, ``"fp16"`` or ``"int8"``."""
        return self._backend.precision

    @property
    def graph_sha256(self) -> str:
        """sha256 of the graph file the backend runs: the fp32, fp16 or int8 ONNX, which give different maps."""
        return self.graph.sha256

    def predict(self, image: ImageLike) -> SaliencyMap:
        """Saliency map of one image (path, bytes, PIL image or uint8 array)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Iterable[ImageLike], batch_size: int = 16) -> list[SaliencyMap]:
        """Saliency maps of many images, in order; images sharing a padded input size run as one batch."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        decoded = [decode(image, self.max_pixels) for image in images]
        plans = [plan(*d.pixels.shape[:2], self.model) for d in decoded]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, p in enumerate(plans):
            groups[p.padded_hw].append(i)
        maps: list[SaliencyMap | None] = [None] * len(decoded)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                for i, prob in zip(chunk, self._run([decoded[i] for i in chunk], [plans[i] for i in chunk])):
                    maps[i] = SaliencyMap(prob, self._provenance(decoded[i]))
        return maps  # type: ignore[return-value]

    def _run(self, decoded: list[DecodedImage], plans: list[Plan]) -> list[np.ndarray]:
        """One network batch: images sharing ``plans[i].padded_hw`` → host probability maps."""
        return (self._run_gpu if self._backend.on_gpu else self._run_cpu)(decoded, plans)

    def _run_cpu(self, decoded: list[DecodedImage], plans: list[Plan]) -> list[np.ndarray]:
        spec = self.model.input
        inputs = [cpu.preprocess(d.pixels, p.resized_hw, p.padded_hw, spec.mean, spec.std)
                  for d, p in zip(decoded, plans)]
        log_density = self._backend.run(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
        return [cpu.postprocess(log_density[i, 0], p.image_hw, p.valid_hw, self.blur_sigma)
                for i, p in enumerate(plans)]

    def _run_gpu(self, decoded: list[DecodedImage], plans: list[Plan]) -> list[np.ndarray]:
        # Upload, network and postprocess are queued on the backend's stream; only the maps come back to the host.
        from . import gpu

        spec = self.model.input
        with self._backend.stream:
            batch = gpu.preprocess_batch([d.pixels for d in decoded], [p.resized_hw for p in plans],
                                         plans[0].padded_hw, spec.mean, spec.std)
            log_density = self._backend.run(batch)
            probs = gpu.postprocess_batch(log_density, [p.image_hw for p in plans], [p.valid_hw for p in plans],
                                          self.blur_sigma)
            return [prob.get() for prob in probs]

    def _provenance(self, image: DecodedImage) -> dict[str, Any]:
        return {"model": self.model.name, "model_version": self.model.version, "model_sha256": self.model.sha256,
                "graph_sha256": self.graph_sha256, "backend": self.backend, "device": self._backend.device, "precision": self.precision,
                "foveal_version": __version__,
                "image_sha256": image.sha256}


def _graphs(card: ModelCard, precision: str) -> dict[str, ModelCard]:
    """Which backend runs which variant of ``card`` for ``precision`` (absent: the fp32 graph)."""
    if precision == "int8":
        int8 = card.variant("int8")  # GPU backends refuse it, so device="auto" lands on ONNX Runtime
        return {"onnxruntime": int8, "tensorrt": int8, "torch": int8}
    if precision == "fp16":
        fp16 = card.variant("fp16")  # torch is absent: it halves the fp32 weights itself
        return {"onnxruntime": fp16, "tensorrt": fp16}
    if precision == "auto":
        fastest = {"onnxruntime": "int8", "tensorrt": "fp16"}
        return {name: card.variant(p) for name, p in fastest.items() if p in card.precisions}
    return {}
