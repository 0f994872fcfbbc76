"""The torch backend: the model's PyTorch definition (``foveal.network``) run on a CUDA GPU with PyTorch.

For machines with PyTorch (CUDA build) but no TensorRT. The network runs in fp16 and channels-last on the engine's
stream (a CuPy stream wrapped with ``torch.cuda.ExternalStream``); batches of one replay a captured CUDA graph.
Input and output cross between CuPy and PyTorch through DLPack, without copies.

The definitions ship inside the package (``foveal.network``, imported with torch only when this backend is
created), so it runs from an installed wheel; it runs shipped models only: ``itti-koch`` (built from its card's
read-out parameters) and learned models whose ``<name>.safetensors`` weights ship beside their ONNX file. The
device is a constructor argument so the same logic runs on CPU tensors in tests.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .. import gpu
from ..errors import BackendUnavailableError, ModelError
from ..models import ModelCard, file_sha256


def load_network(card: ModelCard) -> Any:
    """The PyTorch module computing ``card``'s log-density, in eval mode on the CPU: only where it is known to be
    the network the card's graph was made from (a shipped model, or weights whose sha256 its card records, as
    ``foveal finetune`` writes them). A user's graph named itti-koch, or one beside some .safetensors file, ran
    foveal's own network under that graph's sha256."""
    weights = card.onnx_path.with_suffix(".safetensors")
    if weights.is_file() and (card.shipped or card.weights_sha256 == file_sha256(weights)):
        from ..network import deepgaze

        return deepgaze.load(weights)
    if card.name == "itti-koch" and card.shipped:
        from ..network import itti_koch

        readout = card.raw.get("provenance", {}).get("training", {}).get("readout")
        return itti_koch.build(itti_koch.Readout(**readout) if readout else itti_koch.TUNED)
    raise BackendUnavailableError(f"the torch backend has no PyTorch definition for model {card.name!r}: it runs "
                                  "the shipped models and foveal finetune's folders (their cards record their "
                                  ".safetensors weights)")


class TorchBackend:
    """Run a shipped model's PyTorch definition.

    Args:
        card: the model.
        device: ``"cuda"`` (default; the current CuPy device) or ``"cpu"`` (tests).
        fp16: run weights and activations in half precision (CUDA only); output is float32 either way.
        cuda_graph: replay a captured CUDA graph for batches of one (CUDA only).
    """

    name = "torch"

    @classmethod
    def unavailable(cls) -> str | None:
        why = gpu.unavailable()
        if why is not None:
            return why
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed: pip install 'foveal[torch]' (a CUDA build of torch)"
        return None

    def __init__(self, card: ModelCard, *, device: str = "cuda", fp16: bool = True, cuda_graph: bool = True) -> None:
        if card.precision != "fp32":
            raise BackendUnavailableError(f"torch backend: runs the fp32 weights, not the {card.precision} graph")
        self.on_gpu = device != "cpu"
        if self.on_gpu and (why := self.unavailable()) is not None:
            raise BackendUnavailableError(f"torch backend: {why}")
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(f"torch backend: cannot import torch ({exc})") from None
        self._torch = torch
        network = load_network(card)
        if self.on_gpu:
            import cupy

            if not torch.cuda.is_available():
                raise BackendUnavailableError(f"torch backend: this PyTorch ({torch.__version__}) has no CUDA")
            index = cupy.cuda.runtime.getDevice()
            self._device = torch.device("cuda", index)
            self.device = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self._torch_stream = torch.cuda.ExternalStream(self.stream.ptr, device=self._device)
            self._dtype = torch.float16 if fp16 else torch.float32
        else:
            self._device, self.device, self._dtype = torch.device("cpu"), "cpu", torch.float32
        self.precision = "fp16" if self._dtype == torch.float16 else "fp32"
        self._cuda_graph = cuda_graph and self.on_gpu
        self._network = network.to(self._device, self._dtype).to(memory_format=torch.channels_last).eval()
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def _forward(self, x: Any) -> Any:
        return self._network(x.to(self._dtype).contiguous(memory_format=self._torch.channels_last))

    def run(self, batch: Any) -> Any:
        """float32 N×3×H×W → float32 N×1×h×w: CuPy in and out on CUDA (ordered after the caller's current stream
        and before its later work), NumPy on the CPU."""
        torch = self._torch
        with torch.inference_mode():
            if not self.on_gpu:
                out = self._forward(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
                return self._checked(out.float().numpy(), batch.shape)
            import cupy

            caller = cupy.cuda.get_current_stream()
            self.stream.wait_event(caller.record())
            with self.stream, torch.cuda.stream(self._torch_stream):
                x = torch.from_dlpack(cupy.ascontiguousarray(cupy.asarray(batch), dtype=cupy.float32))
                shape = tuple(x.shape)
                out = self._replay(x) if self._cuda_graph and shape[0] == 1 else self._forward(x)
                result = cupy.from_dlpack(out.float().contiguous())
            caller.wait_event(self.stream.record())
            return self._checked(result, shape)

    def _replay(self, x: Any) -> Any:
        """Batch of one through a CUDA graph captured for its shape (warmed up first, as PyTorch requires)."""
        torch, shape = self._torch, tuple(x.shape)
        if shape not in self._graphs:
            static_in = x.clone()
            for _ in range(2):
                self._forward(static_in)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the default ("global") capture fails when any other thread makes an unsafe CUDA call
            # meanwhile (CuPy growing its pool for a map's table, a kernel compiled for a box query).
            with torch.cuda.graph(graph, stream=self._torch_stream, capture_error_mode="thread_local"):
                static_out = self._forward(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[shape]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out

    @staticmethod
    def _checked(out: Any, shape: tuple[int, ...]) -> Any:
        if out.ndim != 4 or out.shape[0] != shape[0] or out.shape[1] != 1:
            raise ModelError(f"model output has shape {tuple(out.shape)}, expected ({shape[0]}, 1, h, w) log-density")
        return out
